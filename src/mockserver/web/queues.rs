//! The queues agents announce and the agents serving them, by their configured names.

use std::sync::Arc;

use axum::extract::State;
use maud::{html, Markup};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::super::AppState;
use super::layout::page;
use super::visitor::Visitor;
use crate::operator_views::names_or_none;
use crate::protocol::wire_name;

pub async fn page_of_queues(State(state): State<Arc<AppState>>, visitor: Visitor) -> Markup {
    let now = state.clock.now();
    let model = state.model();
    let body = html! {
        h1 { "Queues & agents" }
        table #queue-list {
            thead { tr { th { "Queue" } th { "Kind" } th { "Status" } th { "Agents" } th { "Last heartbeat" } } }
            tbody {
                @for queue in model.queues().values() {
                    @let connected = model.is_connected(queue, now);
                    tr data-queue=(queue.name) data-connected=(connected) {
                        td { (queue.name) }
                        td { (wire_name(&queue.kind)) }
                        td data-status=(wire_name(&queue.status)) {
                            @if connected { (queue.status_text()) } @else { "not connected" }
                        }
                        td { (names_or_none(&queue.agent_names)) }
                        td { (moment(queue.last_heartbeat)) }
                    }
                }
            }
        }
        @if model.queues().is_empty() {
            p.empty { "No agent has announced a queue yet." }
        }
        h2 { "Agents" }
        table #agent-list {
            thead { tr { th { "Agent" } th { "Token" } th { "Version" } th { "Last heartbeat" } } }
            tbody {
                @for agent in model.agents() {
                    tr data-agent=(agent.name) {
                        td { (agent.name) } td { (agent.token_name) } td { (agent.version) }
                        td { (moment(agent.last_heartbeat)) }
                    }
                }
            }
        }
    };
    page("Queues & agents", Some(&visitor), body)
}

fn moment(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}
