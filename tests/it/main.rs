//! Every integration test, in one test binary (one link, not one per file): each module is an
//! area of the product, driven from outside (the simulator over loopback HTTP, or the built
//! binary); `common` holds what they share. Unit tests sit beside the code in `src/`.

mod cli;
mod common;
mod credentials;
mod drills;
mod ecs_api;
mod events;
mod evidence;
mod fc;
mod fuzz;
mod instance;
mod lambda;
mod least_privilege;
mod operate;
mod operators;
mod report;
mod rollback;
mod safety;
mod signature_v3;
mod snapshot_groups;
mod survival;
mod verify;
mod whole_instance;
mod world;
