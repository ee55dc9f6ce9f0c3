//! The CRI runtime: containerd (or any CRI v1 runtime) over its unix socket.
//!
//! Every [`Runtime`] method is one CRI call (two where CRI splits what the agent
//! wants in one answer, such as a container's sandbox id); the `convert` module holds the
//! field mappings. gRPC codes keep their meaning: NotFound, Unavailable and
//! DeadlineExceeded become the matching [`RuntimeError`]s, and NotFound on a stop
//! or remove is success, as CRI's idempotency asks.

mod convert;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{
    ContainerConfig, ContainerStatus, ExecOutput, ImageInfo, RegistryAuth, Result, Runtime, RuntimeError, SandboxConfig, SandboxStatus, Stream,
    StreamRequest,
};

/// The RuntimeClass handler name the CRI runtime answers to by default.
pub const HANDLER: &str = "cri";

/// How long an ordinary CRI call may take; the kubelet's default
/// `--runtime-request-timeout` is the same two minutes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Pulls report no progress over CRI, so only a generous overall bound applies.
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Room on top of a call's own deadline (an exec's or a stop's) before the client
/// gives up on an answer that the runtime should already have sent.
const DEADLINE_SLACK: Duration = Duration::from_secs(10);

/// How long establishing the socket connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Large enough for ExecSync output and the lists of a busy node.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A CRI v1 runtime and image service on a unix socket.
pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

// === impl CriRuntime ===

impl CriRuntime {
    /// Connects to the runtime's socket (e.g. `/run/containerd/containerd.sock`) and
    /// checks it answers CRI v1 `Version`.
    pub async fn connect(socket: &Path) -> super::Result<CriRuntime> {
        let runtime = CriRuntime::lazy(socket);
        let version = runtime.version_response().await?;
        if version.runtime_api_version != "v1" {
            return Err(RuntimeError::Unavailable(format!(
                "{} speaks CRI {:?}, not v1 ({} {})",
                socket.display(),
                version.runtime_api_version,
                version.runtime_name,
                version.runtime_version
            )));
        }
        tracing::debug!(socket = %socket.display(), runtime = %version.runtime_name, version = %version.runtime_version, "connected to the CRI runtime");
        Ok(runtime)
    }

    /// A client for the socket that connects on first use (and reconnects after
    /// the runtime restarts), without checking anything yet.
    pub fn lazy(socket: &Path) -> CriRuntime {
        let path = socket.to_path_buf();
        // The URI is required by the HTTP/2 layer but never resolved: every
        // connection goes to the socket.
        let endpoint = Endpoint::from_static("http://cri.sock").connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }));
        CriRuntime {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
            images: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
            socket: socket.to_path_buf(),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn version_response(&self) -> Result<cri::VersionResponse> {
        let mut client = self.runtime.clone();
        call("Version", REQUEST_TIMEOUT, client.version(request(cri::VersionRequest { version: "v1".into() }, REQUEST_TIMEOUT))).await
    }

    /// The container's status; `sandbox_id` when the caller already knows it
    /// (CRI's ContainerStatus does not say, so otherwise it is looked up).
    async fn status_of(&self, id: &str, sandbox_id: Option<String>) -> Result<ContainerStatus> {
        let mut client = self.runtime.clone();
        let response = call(
            "ContainerStatus",
            REQUEST_TIMEOUT,
            client.container_status(request(cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false }, REQUEST_TIMEOUT)),
        )
        .await?;
        let status = response.status.ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        let sandbox_id = match sandbox_id {
            Some(sandbox_id) => sandbox_id,
            None => self.list(Some(cri::ContainerFilter { id: id.to_string(), ..Default::default() })).await?.into_iter().next().map(|c| c.pod_sandbox_id).unwrap_or_default(),
        };
        Ok(convert::container_status(status, sandbox_id))
    }

    async fn list(&self, filter: Option<cri::ContainerFilter>) -> Result<Vec<cri::Container>> {
        let mut client = self.runtime.clone();
        let response = call("ListContainers", REQUEST_TIMEOUT, client.list_containers(request(cri::ListContainersRequest { filter }, REQUEST_TIMEOUT))).await?;
        Ok(response.containers)
    }

    /// The sandboxes the filter selects, each with its full status: the list has no
    /// addresses, the status of each has. A sandbox removed in between is simply
    /// not listed.
    async fn sandboxes_with_status(&self, filter: Option<cri::PodSandboxFilter>) -> Result<Vec<SandboxStatus>> {
        let mut client = self.runtime.clone();
        let response = call("ListPodSandbox", REQUEST_TIMEOUT, client.list_pod_sandbox(request(cri::ListPodSandboxRequest { filter }, REQUEST_TIMEOUT))).await?;
        let mut sandboxes = Vec::with_capacity(response.items.len());
        for item in response.items {
            match self.sandbox_status(&item.id).await {
                Ok(status) => sandboxes.push(status),
                Err(RuntimeError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(sandboxes)
    }

    /// The handler to ask the runtime for: the agent's name for the default
    /// handler means the runtime's own default.
    fn runtime_handler(handler: &str) -> String {
        if handler == HANDLER {
            String::new()
        } else {
            handler.to_string()
        }
    }
}

/// A request with its deadline sent along (`grpc-timeout`), so that the runtime
/// stops working on it when the client stops waiting.
fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Awaits one call, bounded by `timeout` plus slack on this side too (a runtime
/// that hangs without answering must not hang the agent), and maps failures.
async fn call<T>(what: &str, timeout: Duration, response: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>) -> Result<T> {
    match tokio::time::timeout(timeout + DEADLINE_SLACK, response).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(convert::status_error(what, &status)),
        Err(_) => Err(RuntimeError::Timeout(format!("{what}: no answer from the runtime within {:?}", timeout + DEADLINE_SLACK))),
    }
}

/// Success for a call whose target may already be gone.
fn gone_is_fine(result: Result<()>) -> Result<()> {
    match result {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

#[async_trait::async_trait]
impl Runtime for CriRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn version(&self) -> Result<String> {
        let version = self.version_response().await?;
        Ok(format!("{}://{}", version.runtime_name, version.runtime_version))
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        let mut client = self.images.clone();
        let spec = cri::ImageSpec { image: image.to_string(), ..Default::default() };
        let response = call("ImageStatus", REQUEST_TIMEOUT, client.image_status(request(cri::ImageStatusRequest { image: Some(spec), verbose: false }, REQUEST_TIMEOUT))).await;
        match response {
            Ok(response) => Ok(response.image.map(convert::image_info)),
            // CRI answers "no image" with an empty response, but some runtimes
            // say NotFound instead.
            Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        let mut client = self.images.clone();
        let message = cri::PullImageRequest {
            image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
            auth: auth.map(|auth| cri::AuthConfig {
                username: auth.username.clone(),
                password: auth.password.clone(),
                auth: auth.auth.clone(),
                server_address: auth.server_address.clone(),
                identity_token: auth.identity_token.clone(),
                registry_token: auth.registry_token.clone(),
            }),
            sandbox_config: None,
        };
        match call("PullImage", PULL_TIMEOUT, client.pull_image(request(message, PULL_TIMEOUT))).await {
            Ok(response) => Ok(response.image_ref),
            Err(error @ (RuntimeError::Unavailable(_) | RuntimeError::Timeout(_))) => Err(error),
            Err(RuntimeError::NotFound(message) | RuntimeError::Failed(message) | RuntimeError::ImagePull { message, .. }) => {
                Err(RuntimeError::ImagePull { image: image.to_string(), message })
            }
        }
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let mut client = self.runtime.clone();
        let message = cri::RunPodSandboxRequest {
            config: Some(convert::sandbox_config(config, false)),
            runtime_handler: CriRuntime::runtime_handler(&config.runtime_handler),
        };
        let response = call("RunPodSandbox", REQUEST_TIMEOUT, client.run_pod_sandbox(request(message, REQUEST_TIMEOUT))).await?;
        Ok(response.pod_sandbox_id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let message = cri::StopPodSandboxRequest { pod_sandbox_id: id.to_string() };
        gone_is_fine(call("StopPodSandbox", REQUEST_TIMEOUT, client.stop_pod_sandbox(request(message, REQUEST_TIMEOUT))).await.map(drop))
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let message = cri::RemovePodSandboxRequest { pod_sandbox_id: id.to_string() };
        gone_is_fine(call("RemovePodSandbox", REQUEST_TIMEOUT, client.remove_pod_sandbox(request(message, REQUEST_TIMEOUT))).await.map(drop))
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        let mut client = self.runtime.clone();
        let message = cri::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false };
        let response = call("PodSandboxStatus", REQUEST_TIMEOUT, client.pod_sandbox_status(request(message, REQUEST_TIMEOUT))).await?;
        let status = response.status.ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))?;
        Ok(convert::sandbox_status(status))
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        self.sandboxes_with_status(None).await
    }

    async fn list_pod_sandboxes(&self, pod_uid: &str) -> Result<Vec<SandboxStatus>> {
        let filter = cri::PodSandboxFilter {
            label_selector: [(crate::runtime::labels::POD_UID.to_string(), pod_uid.to_string())].into_iter().collect(),
            ..Default::default()
        };
        self.sandboxes_with_status(Some(filter)).await
    }

    async fn list_sandboxes_brief(&self) -> Result<Vec<SandboxStatus>> {
        let mut client = self.runtime.clone();
        let response = call("ListPodSandbox", REQUEST_TIMEOUT, client.list_pod_sandbox(request(cri::ListPodSandboxRequest { filter: None }, REQUEST_TIMEOUT))).await?;
        Ok(response.items.into_iter().map(convert::sandbox_brief).collect())
    }

    async fn list_containers_brief(&self) -> Result<Vec<ContainerStatus>> {
        Ok(self.list(None).await?.into_iter().map(convert::container_brief).collect())
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox: &SandboxConfig) -> Result<String> {
        let mut client = self.runtime.clone();
        let message = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(convert::container_config(config, sandbox.host_network)),
            sandbox_config: Some(convert::sandbox_config(sandbox, config.security.privileged)),
        };
        let response = call("CreateContainer", REQUEST_TIMEOUT, client.create_container(request(message, REQUEST_TIMEOUT))).await?;
        Ok(response.container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let message = cri::StartContainerRequest { container_id: id.to_string() };
        call("StartContainer", REQUEST_TIMEOUT, client.start_container(request(message, REQUEST_TIMEOUT))).await.map(drop)
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut client = self.runtime.clone();
        let timeout = convert::whole_seconds(grace);
        let deadline = Duration::from_secs(timeout.unsigned_abs()) + REQUEST_TIMEOUT;
        let message = cri::StopContainerRequest { container_id: id.to_string(), timeout };
        gone_is_fine(call("StopContainer", deadline, client.stop_container(request(message, deadline))).await.map(drop))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let message = cri::RemoveContainerRequest { container_id: id.to_string() };
        gone_is_fine(call("RemoveContainer", REQUEST_TIMEOUT, client.remove_container(request(message, REQUEST_TIMEOUT))).await.map(drop))
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.status_of(id, None).await
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let filter = sandbox_id.map(|sandbox_id| cri::ContainerFilter { pod_sandbox_id: sandbox_id.to_string(), ..Default::default() });
        let containers = self.list(filter).await?;
        let mut statuses = Vec::with_capacity(containers.len());
        for container in containers {
            match self.status_of(&container.id, Some(container.pod_sandbox_id)).await {
                Ok(status) => statuses.push(status),
                Err(RuntimeError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(statuses)
    }

    async fn exec_sync(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        let mut client = self.runtime.clone();
        let seconds = convert::whole_seconds(timeout);
        // Zero would mean "no timeout" to CRI; the caller always means a bound.
        let seconds = seconds.max(1);
        let deadline = Duration::from_secs(seconds.unsigned_abs());
        let message = cri::ExecSyncRequest { container_id: id.to_string(), cmd: command.to_vec(), timeout: seconds };
        let response = call("ExecSync", deadline, client.exec_sync(request(message, deadline + DEADLINE_SLACK))).await?;
        Ok(ExecOutput { exit_code: response.exit_code, stdout: response.stdout, stderr: response.stderr })
    }

    async fn exec(&self, id: &str, stream: &StreamRequest) -> Result<Stream> {
        let mut client = self.runtime.clone();
        let message = cri::ExecRequest {
            container_id: id.to_string(),
            cmd: stream.command.clone(),
            tty: stream.tty,
            stdin: stream.stdin,
            stdout: stream.stdout,
            // A terminal merges stderr into stdout; CRI refuses both at once.
            stderr: stream.stderr && !stream.tty,
        };
        let response = call("Exec", REQUEST_TIMEOUT, client.exec(request(message, REQUEST_TIMEOUT))).await?;
        Ok(Stream::Remote(response.url))
    }

    async fn attach(&self, id: &str, stream: &StreamRequest) -> Result<Stream> {
        let mut client = self.runtime.clone();
        let message = cri::AttachRequest {
            container_id: id.to_string(),
            stdin: stream.stdin,
            tty: stream.tty,
            stdout: stream.stdout,
            stderr: stream.stderr && !stream.tty,
        };
        let response = call("Attach", REQUEST_TIMEOUT, client.attach(request(message, REQUEST_TIMEOUT))).await?;
        Ok(Stream::Remote(response.url))
    }

    async fn port_forward(&self, sandbox_id: &str) -> Result<Stream> {
        let mut client = self.runtime.clone();
        // Ports are chosen per stream by the client of the session, not here.
        let message = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.to_string(), port: Vec::new() };
        let response = call("PortForward", REQUEST_TIMEOUT, client.port_forward(request(message, REQUEST_TIMEOUT))).await?;
        Ok(Stream::Remote(response.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let error = CriRuntime::connect(&dir.path().join("absent.sock")).await.err().expect("no runtime listens there");
        assert!(matches!(error, RuntimeError::Unavailable(_)), "{error:?}");
    }

    #[test]
    fn the_default_handler_is_the_runtime_default() {
        assert_eq!(CriRuntime::runtime_handler(HANDLER), "");
        assert_eq!(CriRuntime::runtime_handler(""), "");
        assert_eq!(CriRuntime::runtime_handler("kata"), "kata");
    }
}
