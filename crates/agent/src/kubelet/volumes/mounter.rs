//! Mounting memory-backed volumes: the one operating-system dependency of the
//! volume manager beyond plain files, behind a trait so tests can record the
//! calls instead of mounting.
//!
//! [`HostMounter`] runs `mount`/`umount` (no unsafe system calls) and reads the
//! mount table from `/proc/self/mountinfo`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Mounts and unmounts tmpfs volumes, and finds what is mounted.
pub trait Mounter: Send + Sync {
    /// Mounts a tmpfs on `target` (an existing directory), at most `size_bytes`
    /// big; `None` leaves the kernel's default (half the memory).
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> io::Result<()>;

    /// Unmounts whatever is mounted on `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;

    /// Mount points at `dir` or below it, deepest first (the order to unmount
    /// them in).
    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The host's `mount` and `umount` commands and `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> io::Result<()> {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs"]);
        if let Some(size) = size_bytes.filter(|s| *s > 0) {
            cmd.arg("-o").arg(format!("size={size}"));
        }
        cmd.arg("tmpfs").arg(target);
        run(cmd, "mount")
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut cmd = Command::new("umount");
        cmd.arg(target);
        run(cmd, "umount")
    }

    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let table = std::fs::read_to_string("/proc/self/mountinfo")?;
        // The table names canonical paths; `dir` may reach them through a symlink.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ok(mount_points_under(&table, &dir))
    }
}

fn run(mut cmd: Command, what: &str) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!("{what} failed ({}): {}", out.status, stderr.trim())))
}

/// The mount points of a `mountinfo` table at or below `dir`, deepest first.
pub(crate) fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:36 / /var/lib/skiff/pods/u1/volumes/kubernetes.io~empty-dir/cache rw,relatime - tmpfs tmpfs rw,size=1024k
41 22 0:37 / /var/lib/skiff/pods/u1/volumes/kubernetes.io~empty-dir/with\\040space rw - tmpfs tmpfs rw
42 40 0:38 / /var/lib/skiff/pods/u1/volumes/kubernetes.io~empty-dir/cache/inner rw - tmpfs tmpfs rw
43 22 0:39 / /var/lib/skiff/pods/u10/volumes/x rw - tmpfs tmpfs rw
";

    #[test]
    fn mount_points_below_a_directory_come_deepest_first() {
        let points = mount_points_under(TABLE, Path::new("/var/lib/skiff/pods/u1"));
        let base = "/var/lib/skiff/pods/u1/volumes/kubernetes.io~empty-dir";
        assert_eq!(
            points,
            vec![PathBuf::from(format!("{base}/cache/inner")), PathBuf::from(format!("{base}/cache")), PathBuf::from(format!("{base}/with space"))]
        );
    }

    #[test]
    fn a_real_tmpfs_is_mounted_found_and_unmounted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mem");
        std::fs::create_dir(&target).unwrap();
        if let Err(e) = HostMounter.mount_tmpfs(&target, Some(1 << 20)) {
            // Only where mounting is not allowed at all (an unprivileged build).
            eprintln!("skipping: cannot mount a tmpfs here: {e}");
            return;
        }
        let found = HostMounter.mounts_under(dir.path()).unwrap();
        assert_eq!(found, vec![std::fs::canonicalize(&target).unwrap()]);
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = table.lines().find(|l| l.contains(&*found[0].to_string_lossy())).unwrap().to_string();
        HostMounter.unmount(&target).unwrap();
        assert!(line.contains("tmpfs") && line.contains("size=1024k"), "{line}");
        assert!(HostMounter.mounts_under(dir.path()).unwrap().is_empty());
    }
}
