//! The bundled job side's state: users, orders, jobs, queues and deliveries, and the
//! rules that move them. Plain data and plain functions: no I/O, and the time is always
//! passed in, so tests move the clock instead of waiting 48 hours.

mod closeout;
mod error;
#[cfg(test)]
mod fixture;
mod job_actions;
mod jobs;
mod leases;
mod people;
mod queues;
mod sending;
mod settings;
mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use closeout::{
    Charge, Closeout, CloseoutRequest, Invoice, InvoiceLine, PackingSlip, PaymentFault, SlipItem,
};
pub use error::{unknown_job, unknown_order, ErrorKind, ModelError};
pub use job_actions::JobAction;
pub use jobs::{check_order_number, FileLocation, Job, JobFile, JobState, NewFile, Order};
pub use leases::{Delivery, DeliveryState, RecordedEvent};
pub use people::{default_profiles, Permission, Profile};
pub use queues::{AgentSeen, Queue};
pub use sending::SendResult;
pub use settings::{Settings, SettingsChange};
pub use store::{Address, LineItem, Payment, Received, StoreOrder, Template};

/// The whole state of the job side. What is serialized is the work (orders, jobs,
/// deliveries, queues and the next ids), which a restarted server can take back with
/// [`Model::restore_work`]; settings, profiles and users come from start-up.
/// A collection the store holds no item of reads back empty.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    #[serde(skip)]
    settings: Settings,
    #[serde(skip)]
    profiles: BTreeMap<String, Profile>,
    /// User name to profile name.
    #[serde(skip)]
    users: BTreeMap<String, String>,
    /// Production templates by store product name.
    #[serde(skip)]
    templates: BTreeMap<String, Template>,
    orders: BTreeMap<String, Order>,
    jobs: BTreeMap<String, Job>,
    deliveries: BTreeMap<String, Delivery>,
    queues: BTreeMap<String, Queue>,
    /// The agents heard from: one per token and configured name, since agents may
    /// share a token.
    agents: Vec<AgentSeen>,
    /// The simulated payment step's charges, by idempotency key.
    charges: BTreeMap<String, Charge>,
    /// Deliveries in the order they were made, oldest first, for fair claims.
    delivery_order: Vec<String>,
    next_job: u64,
    next_file: u64,
    next_delivery: u64,
}

impl Model {
    pub fn new(settings: Settings) -> Model {
        Model {
            settings,
            profiles: default_profiles(),
            next_job: 1001,
            next_file: 1,
            next_delivery: 1,
            ..Model::default()
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn orders(&self) -> &BTreeMap<String, Order> {
        &self.orders
    }

    pub fn jobs(&self) -> &BTreeMap<String, Job> {
        &self.jobs
    }

    pub fn deliveries(&self) -> &BTreeMap<String, Delivery> {
        &self.deliveries
    }

    pub fn queues(&self) -> &BTreeMap<String, Queue> {
        &self.queues
    }

    /// The agents heard from, one per token and configured name.
    pub fn agents(&self) -> &[AgentSeen] {
        &self.agents
    }

    /// The profile `user` has, if they are a user.
    pub fn profile_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// Deliveries to change by hand, for the work store's tests.
    #[cfg(test)]
    pub(crate) fn deliveries_mut(&mut self) -> &mut BTreeMap<String, Delivery> {
        &mut self.deliveries
    }

    /// Takes the work of a saved model, keeping this one's settings, profiles and users.
    pub fn restore_work(&mut self, saved: Model) {
        *self = Model {
            settings: std::mem::take(&mut self.settings),
            profiles: std::mem::take(&mut self.profiles),
            users: std::mem::take(&mut self.users),
            templates: std::mem::take(&mut self.templates),
            ..saved
        };
    }
}
