//! `tbot mock ticket`: who ordered a job and what its device needs (protocol 1.1),
//! as a person gives them on the command line.

use serde_json::{json, Value};

use crate::protocol::{JobTicket, Media, Sides};

#[derive(clap::Args)]
pub(crate) struct TicketArgs {
    /// Who ordered the job.
    #[arg(long)]
    customer: Option<String>,
    /// How many copies.
    #[arg(long)]
    quantity: Option<u64>,
    /// one-sided or two-sided.
    #[arg(long, value_parser = ["one-sided", "two-sided"])]
    sides: Option<String>,
    /// cmyk, gray, spot, or a word of your own.
    #[arg(long)]
    color: Option<String>,
    /// The stock's name, such as "Gloss 350".
    #[arg(long)]
    media: Option<String>,
    #[arg(long)]
    width_mm: Option<f64>,
    #[arg(long)]
    height_mm: Option<f64>,
    #[arg(long)]
    weight_gsm: Option<f64>,
    /// A finishing step, such as cut or fold (repeatable).
    #[arg(long)]
    finishing: Vec<String>,
    /// When it is due, such as 2026-11-23T16:00:00Z.
    #[arg(long, value_parser = parse_due)]
    due: Option<time::OffsetDateTime>,
    #[arg(long)]
    notes: Option<String>,
}

impl TicketArgs {
    /// The body of `PUT /jobs/{id}/ticket`.
    pub(crate) fn body(self) -> Value {
        let media = (self.media.is_some()
            || self.width_mm.is_some()
            || self.height_mm.is_some()
            || self.weight_gsm.is_some())
        .then_some(Media {
            name: self.media,
            width_mm: self.width_mm,
            height_mm: self.height_mm,
            weight_gsm: self.weight_gsm,
        });
        let ticket = JobTicket {
            quantity: self.quantity,
            sides: self.sides.map(|sides| {
                if sides == "two-sided" {
                    Sides::TwoSided
                } else {
                    Sides::OneSided
                }
            }),
            color: self.color,
            media,
            finishing: self.finishing,
            due: self.due,
            notes: self.notes,
        };
        let ticket = (ticket != JobTicket::default()).then_some(ticket);
        json!({"customer": self.customer, "ticket": ticket})
    }
}

fn parse_due(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| format!("{err}: write it like 2026-11-23T16:00:00Z"))
}
