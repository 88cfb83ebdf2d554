//! ecs-rollback: roll an Alibaba Cloud ECS disk back to a snapshot, safely.
//! See ARCHITECTURE.md for the map of modules and how an event flows through them.

pub mod answer;
pub mod approval;
pub mod claim;
pub mod cli;
pub mod drill;
pub mod drill_report;
pub mod ecs;
pub mod errors;
pub mod fc;
pub mod fit;
pub mod handler;
pub mod hold;
pub mod ids;
pub mod instance_hold;
pub mod instance_plan;
pub mod lambda;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod operate;
pub mod pause;
pub mod policy;
pub mod poller;
pub mod preflight;
pub mod probe;
pub mod report;
pub mod request;
pub mod rollback;
pub mod settings;
pub mod sim;
pub mod startup;
pub mod strict_json;
pub mod triggers;
pub mod verify;
pub mod workflow;

#[cfg(test)]
mod layers;
