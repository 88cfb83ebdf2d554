//! Everything that speaks the Alibaba Cloud ECS RPC API: the signer, credentials, the retry
//! policy, the transport port, response models, the error type, and the typed client.
//! Only this module builds requests to Alibaba Cloud.

pub mod client;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod model;
pub mod retry;
pub mod signer;
pub mod signer_v3;
pub mod transport;

pub use client::{
    CallKind, DiskQuery, EcsClient, GroupDisks, InstanceQuery, RunCommandSpec,
    SnapshotGroupRequest, SnapshotQuery, StopOptions, StoppedMode,
};
pub use credentials::{ClientConfig, CredentialSource, Credentials, Endpoint, Signing};
pub use error::{EcsError, ErrorKind, Retry};
pub use retry::RetryConfig;
pub use transport::{HttpRequest, HttpResponse, ReqwestTransport, Transport, TransportError};
