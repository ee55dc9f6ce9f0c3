//! `skiff images`: the node's local images, which are built on the host and
//! imported, never pulled.
//!
//! - `build` makes `pause.tar` (skiff.local/pause:3.10, the sandbox image) and
//!   `busybox.tar` (skiff.local/busybox:1.35) as OCI archives from Debian's
//!   busybox-static with umoci and skopeo — the same images, made the same way,
//!   as `scripts/build-images.sh`, so the binary does not need the repository.
//! - `import` loads archives into the containerd that `skiff up` runs (or the
//!   system's), in the CRI namespace `k8s.io`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use skiff_agent::runtime::containerd::{import_image, ContainerdPaths};
use skiff_agent::runtime::cri::CriRuntime;

pub const PAUSE_IMAGE: &str = "skiff.local/pause:3.10";
pub const BUSYBOX_IMAGE: &str = "skiff.local/busybox:1.35";
pub const PAUSE_ARCHIVE: &str = "pause.tar";
pub const BUSYBOX_ARCHIVE: &str = "busybox.tar";
/// The busybox-static binary the images are made of.
const BUSYBOX: &str = "/bin/busybox";
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The pause image's entrypoint: PID 1 ignores signals it has no handler for, so
/// the traps are what make the sandbox stop at once; `wait` returns as soon as a
/// trapped signal arrives.
const PAUSE_SCRIPT: &str = r#"trap "exit 0" TERM INT; while :; do sleep 86400 & wait $!; done"#;

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Build pause.tar and busybox.tar (OCI archives) from busybox-static.
    ///
    /// Needs umoci, skopeo and busybox-static (scripts/install-deps.sh installs
    /// them). Archives newer than the busybox binary and this program are kept.
    /// `skiff up` imports them from DATA_DIR/images into its containerd.
    #[command(verbatim_doc_comment)]
    Build(BuildArgs),
    /// Import image archives (docker save or OCI) into the running containerd.
    ///
    /// Uses the containerd `skiff up` started under DATA_DIR, else the system's
    /// at /run/containerd/containerd.sock.
    ///
    /// Example:
    ///   skiff images import ./myapp.tar
    #[command(verbatim_doc_comment)]
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The data directory of `skiff up`; the archives go to DATA_DIR/images.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// Where to write the archives instead of DATA_DIR/images.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The data directory of the running `skiff up`.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// containerd's socket, instead of finding the running one.
    #[arg(long)]
    pub containerd_socket: Option<PathBuf>,
    /// Image archives.
    #[arg(required = true, value_name = "FILE.tar")]
    pub files: Vec<PathBuf>,
}

pub async fn run(cmd: ImagesCommand) -> anyhow::Result<()> {
    match cmd {
        ImagesCommand::Build(args) => {
            let out = args.out.unwrap_or_else(|| images_dir(&args.data_dir));
            for built in build(&out).await? {
                eprintln!("{built}");
            }
            eprintln!("next: skiff up (imports them), or skiff images import {}/*.tar", out.display());
            Ok(())
        }
        ImagesCommand::Import(args) => {
            let socket = match args.containerd_socket {
                Some(s) => s,
                None => running_containerd(&args.data_dir).await.with_context(|| {
                    format!(
                        "no containerd is running: start `skiff up --data-dir {}` first (it runs one), or start the system's (`systemctl start containerd`)",
                        args.data_dir.display()
                    )
                })?,
            };
            for file in &args.files {
                let names = import_image(&socket, file).await?;
                eprintln!("imported {} from {}", names.join(", "), file.display());
            }
            Ok(())
        }
    }
}

/// Where `skiff images build` puts the archives by default, and where `skiff up`
/// looks for them.
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

/// The socket of a containerd that answers: the one `skiff up` supervises under
/// `data_dir`, else the system's.
pub async fn running_containerd(data_dir: &Path) -> Option<PathBuf> {
    let candidates = [ContainerdPaths::new(data_dir).socket, PathBuf::from(crate::agent::DEFAULT_CONTAINERD_SOCKET)];
    for socket in candidates {
        if socket.exists() && CriRuntime::connect(&socket).await.is_ok() {
            return Some(socket);
        }
    }
    None
}

// === build ===

/// Builds both archives into `out` (created if missing); returns a line per image
/// saying what was done.
pub async fn build(out: &Path) -> anyhow::Result<Vec<String>> {
    for (tool, package) in [("umoci", "umoci"), ("skopeo", "skopeo")] {
        if find_program(tool).is_none() {
            bail!("{tool} is not installed (apt-get install {package}, or run scripts/install-deps.sh)");
        }
    }
    let busybox = Path::new(BUSYBOX);
    if !busybox.exists() {
        bail!("{BUSYBOX} is missing (apt-get install busybox-static)");
    }
    let applets = run_tool(BUSYBOX, &["--list-full"]).await.context("busybox-static does not run")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let inputs = newest_input(busybox);
    let work = tempfile::Builder::new().prefix("skiff-images.").tempdir().context("creating a work directory")?;
    let mut builder = Builder { work: work.path().to_path_buf(), layout_ready: false };
    let mut done = Vec::new();

    let pause = out.join(PAUSE_ARCHIVE);
    if up_to_date(&pause, inputs) {
        done.push(format!("up to date: {PAUSE_IMAGE} -> {}", pause.display()));
    } else {
        let rootfs = builder.new_image("pause").await?;
        std::fs::create_dir_all(rootfs.join("bin"))?;
        install_busybox(busybox, &rootfs)?;
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh"))?;
        let entrypoint = ["/bin/busybox", "sh", "-c", PAUSE_SCRIPT];
        let config: Vec<String> = entrypoint.iter().flat_map(|e| ["--config.entrypoint".to_string(), e.to_string()]).collect();
        builder.finish("pause", PAUSE_IMAGE, &pause, &config).await?;
        done.push(format!("built {PAUSE_IMAGE} -> {}", pause.display()));
    }

    let busybox_archive = out.join(BUSYBOX_ARCHIVE);
    if up_to_date(&busybox_archive, inputs) {
        done.push(format!("up to date: {BUSYBOX_IMAGE} -> {}", busybox_archive.display()));
    } else {
        let rootfs = builder.new_image("busybox").await?;
        busybox_rootfs(busybox, &rootfs, &applets)?;
        builder.finish("busybox", BUSYBOX_IMAGE, &busybox_archive, &["--config.cmd".to_string(), "sh".to_string()]).await?;
        done.push(format!("built {BUSYBOX_IMAGE} -> {}", busybox_archive.display()));
    }
    Ok(done)
}

/// An OCI layout in a work directory, one tag per image.
struct Builder {
    work: PathBuf,
    layout_ready: bool,
}

impl Builder {
    fn layout(&self, tag: &str) -> String {
        format!("{}:{tag}", self.work.join("oci").display())
    }

    /// An empty image `tag`, unpacked; returns its rootfs.
    async fn new_image(&mut self, tag: &str) -> anyhow::Result<PathBuf> {
        if !self.layout_ready {
            run_tool("umoci", &["init", "--layout", &self.work.join("oci").to_string_lossy()]).await?;
            self.layout_ready = true;
        }
        run_tool("umoci", &["new", "--image", &self.layout(tag)]).await?;
        let bundle = self.work.join(tag);
        let mut unpack = vec!["unpack".to_string()];
        if !is_root() {
            unpack.push("--rootless".into());
        }
        unpack.extend(["--image".to_string(), self.layout(tag), bundle.to_string_lossy().into_owned()]);
        run_tool("umoci", &unpack.iter().map(String::as_str).collect::<Vec<_>>()).await?;
        Ok(bundle.join("rootfs"))
    }

    /// Repacks the rootfs, sets the config and exports `name` to `archive`.
    async fn finish(&self, tag: &str, name: &str, archive: &Path, config: &[String]) -> anyhow::Result<()> {
        let image = self.layout(tag);
        run_tool("umoci", &["repack", "--image", &image, &self.work.join(tag).to_string_lossy()]).await?;
        let mut args = vec!["config", "--image", &image, "--config.env", IMAGE_PATH, "--config.workingdir", "/"];
        args.extend(config.iter().map(String::as_str));
        run_tool("umoci", &args).await?;
        let tmp = archive.with_extension("tar.tmp");
        let _ = std::fs::remove_file(&tmp);
        let source = format!("oci:{image}");
        let dest = format!("oci-archive:{}:{name}", tmp.display());
        run_tool("skopeo", &["copy", "--quiet", &source, &dest]).await?;
        std::fs::rename(&tmp, archive).with_context(|| format!("moving the archive to {}", archive.display()))?;
        Ok(())
    }
}

fn install_busybox(busybox: &Path, rootfs: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dest = rootfs.join("bin/busybox");
    std::fs::copy(busybox, &dest).with_context(|| format!("copying {} into the image", busybox.display()))?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The busybox image's files: every applet linked where busybox would install
/// it, `/etc/passwd` and `/etc/group` with root and nobody, a sticky `/tmp`.
fn busybox_rootfs(busybox: &Path, rootfs: &Path, applets: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home", "var/www", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    install_busybox(busybox, rootfs)?;
    for applet in applet_paths(applets) {
        let link = rootfs.join(applet);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/busybox", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n")?;
    Ok(())
}

/// The applets of `busybox --list-full` (paths relative to the root), without
/// busybox itself and anything that would escape the root.
fn applet_paths(list: &str) -> Vec<&str> {
    list.lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty() && *l != "bin/busybox" && !l.split('/').any(|part| part == ".." || part.is_empty()))
        .collect()
}

/// The newest of what the archives are made from: the busybox binary and this
/// program (which holds the recipe).
fn newest_input(busybox: &Path) -> Option<SystemTime> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let exe = std::env::current_exe().ok();
    [mtime(busybox), exe.as_deref().and_then(mtime)].into_iter().flatten().max()
}

/// Whether `archive` exists, is not empty and is newer than its inputs.
fn up_to_date(archive: &Path, inputs: Option<SystemTime>) -> bool {
    let Ok(meta) = std::fs::metadata(archive) else { return false };
    let (Ok(modified), Some(inputs)) = (meta.modified(), inputs) else { return false };
    meta.len() > 0 && modified > inputs
}

/// Whether this process runs as root (the `Uid:` line of /proc/self/status).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    effective_uid(&status) == Some(0)
}

fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Runs a tool and returns its stdout; a failure carries its stderr.
async fn run_tool(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applets_are_linked_inside_the_root_only() {
        let list = "/bin/busybox\n/bin/sh\n/usr/bin/wget\n/sbin/ip\n/../etc/evil\n\n";
        assert_eq!(applet_paths(list), ["bin/sh", "usr/bin/wget", "sbin/ip"]);
    }

    #[test]
    fn the_effective_uid_is_the_second_uid() {
        let status = "Name:\tskiff\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn an_archive_older_than_its_inputs_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pause.tar");
        assert!(!up_to_date(&archive, Some(SystemTime::UNIX_EPOCH)), "missing");
        std::fs::write(&archive, b"").unwrap();
        assert!(!up_to_date(&archive, Some(SystemTime::UNIX_EPOCH)), "empty");
        std::fs::write(&archive, b"x").unwrap();
        assert!(up_to_date(&archive, Some(SystemTime::UNIX_EPOCH)));
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(!up_to_date(&archive, Some(future)));
    }
}
