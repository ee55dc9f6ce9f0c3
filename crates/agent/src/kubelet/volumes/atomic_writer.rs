//! The kubelet's AtomicWriter: a content volume (configMap, secret, downwardAPI,
//! projected) changes all at once, so a reader never sees half an update.
//!
//! The files live in a timestamped directory (`..2026_11_22_01_02_03.1234567`);
//! `..data` is a symlink to the current one, and every user-visible top-level
//! entry is a symlink through it (`key → ..data/key`). An update writes a new
//! timestamped directory, points `..data_tmp` at it and renames that over `..data`
//! (one atomic rename), then drops top-level entries that are gone and the old
//! directory. Nothing is written when the content and modes are unchanged.
//!
//! With a pod fsGroup, the new directory tree is given to that group before the
//! swap (directories also get setgid and group read/search), as the kubelet's
//! volume ownership step does; file modes already include the group bits the
//! caller wants.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::Rng;

/// The symlink to the current timestamped directory.
pub(crate) const DATA_DIR: &str = "..data";
/// The symlink that is renamed over [`DATA_DIR`].
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a content volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`0o644`).
    pub mode: u32,
}

/// A content volume's files by relative path (`key`, `dir/key`).
pub type Payload = BTreeMap<String, FileProjection>;

/// Makes `target` (an existing directory) hold exactly `payload`; returns whether
/// anything was written. `group` is the pod's fsGroup, if it has one.
pub fn write(target: &Path, payload: &Payload, group: Option<u32>) -> io::Result<bool> {
    let payload = validate_payload(payload)?;
    let data_path = target.join(DATA_DIR);
    let old_ts = match fs::read_link(&data_path) {
        Ok(link) => Some(link),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };

    let mut to_remove = BTreeSet::new();
    if let Some(old) = &old_ts {
        let old_path = target.join(old);
        to_remove = paths_to_remove(&payload, &old_path)?;
        if to_remove.is_empty() && !should_write(&payload, &old_path)? && user_visible_complete(target, &payload) {
            return Ok(false);
        }
    }

    let ts_dir = new_timestamp_dir(target)?;
    let ts_name = ts_dir.file_name().map(PathBuf::from).unwrap_or_default();
    if let Err(e) = write_payload(&payload, &ts_dir).and_then(|()| group.map_or(Ok(()), |gid| give_to_group(&ts_dir, gid))) {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }
    create_user_visible(target, &payload)?;

    let tmp = target.join(DATA_DIR_TMP);
    // A leftover from an interrupted update would make the symlink call fail.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Err(e) = std::os::unix::fs::symlink(&ts_name, &tmp) {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &data_path) {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }

    for path in to_remove.iter().filter(|p| !p.contains('/')) {
        match fs::remove_file(target.join(path)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(old) = old_ts {
        // Only a timestamped directory of our own, never something `..data`
        // might have been pointed at from outside.
        let old_path = target.join(&old);
        if old.components().count() == 1 && old_path.parent() == Some(target) {
            match fs::remove_dir_all(&old_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(true)
}

/// The payload with cleaned paths, or why a path may not be written: absolute,
/// with a `..` element, starting with `..` (reserved for the writer's own names),
/// or too long.
fn validate_payload(payload: &Payload) -> io::Result<Payload> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        validate_path(path).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        let cleaned = clean_path(path);
        if cleaned.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid path: {path:?} names no file")));
        }
        clean.insert(cleaned, file.clone());
    }
    Ok(clean)
}

/// `validatePath` of the AtomicWriter.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("invalid path: must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!("invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!("invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// `filepath.Clean` for relative paths without `..`: no empty or `.` elements.
fn clean_path(path: &str) -> String {
    path.split('/').filter(|p| !p.is_empty() && *p != ".").collect::<Vec<_>>().join("/")
}

/// Whether any file is missing from the old directory or differs in content or mode.
fn should_write(payload: &Payload, old: &Path) -> io::Result<bool> {
    for (path, file) in payload {
        let full = old.join(path);
        let meta = match fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != file.mode & 0o7777 {
            return Ok(true);
        }
        if fs::read(&full)? != file.data {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every path (files and directories) in the old directory that the new payload
/// does not have.
fn paths_to_remove(payload: &Payload, old: &Path) -> io::Result<BTreeSet<String>> {
    let mut current = BTreeSet::new();
    match walk(old, "", &mut current) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    }
    let mut wanted = BTreeSet::new();
    for path in payload.keys() {
        let mut sub = path.as_str();
        loop {
            wanted.insert(sub.to_string());
            match sub.rfind('/') {
                Some(i) => sub = &sub[..i],
                None => break,
            }
        }
    }
    Ok(current.difference(&wanted).cloned().collect())
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &rel, out)?;
        }
        out.insert(rel);
    }
    Ok(())
}

/// Whether every top-level user-visible link exists.
fn user_visible_complete(target: &Path, payload: &Payload) -> bool {
    payload.keys().all(|path| fs::symlink_metadata(target.join(top_level(path))).is_ok())
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// A fresh `..<UTC timestamp>.<random>` directory with mode 0755, so that group
/// and others can walk into it whatever the umask.
fn new_timestamp_dir(target: &Path) -> io::Result<PathBuf> {
    let stamp = jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.").to_string();
    let mut rng = rand::rng();
    for _ in 0..100 {
        let dir = target.join(format!("{stamp}{}", rng.random::<u32>()));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free timestamped directory name in {}", target.display())))
}

fn write_payload(payload: &Payload, dir: &Path) -> io::Result<()> {
    for (path, file) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::File::create(&full)?;
        f.write_all(&file.data)?;
        // The mode exactly, not as the umask leaves it.
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode & 0o7777))?;
    }
    Ok(())
}

/// Gives `dir` and everything below it to group `gid`; directories get setgid and
/// group read and search (upstream's read-only mask), files keep their modes.
pub(crate) fn give_to_group(dir: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, None, Some(gid))?;
    let meta = fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        fs::set_permissions(dir, fs::Permissions::from_mode((meta.permissions().mode() & 0o7777) | 0o2550))?;
        for entry in fs::read_dir(dir)? {
            give_to_group(&entry?.path(), gid)?;
        }
    }
    Ok(())
}

/// `name → ..data/name` for every top-level entry of the payload that has no link
/// yet.
fn create_user_visible(target: &Path, payload: &Payload) -> io::Result<()> {
    for path in payload.keys() {
        let name = top_level(path);
        let visible = target.join(name);
        if fs::symlink_metadata(&visible).is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &visible)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files.iter().map(|(p, d, m)| (p.to_string(), FileProjection { data: d.as_bytes().to_vec(), mode: *m })).collect()
    }

    fn write_none(target: &Path, payload: &Payload) -> io::Result<bool> {
        write(target, payload, None)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn timestamped(dir: &Path) -> Vec<String> {
        entries(dir).into_iter().filter(|n| n.starts_with("..") && n != DATA_DIR).collect()
    }

    #[test]
    fn files_are_symlinks_through_the_data_link_into_a_timestamped_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        assert!(write_none(target, &payload(&[("app.conf", "a=1", 0o644), ("conf.d/extra", "x", 0o400)])).unwrap());

        let ts = timestamped(target);
        assert_eq!(ts.len(), 1);
        let name = &ts[0];
        // `..2026_11_22_01_02_03.<digits>`
        let (stamp, random) = name[2..].rsplit_once('.').unwrap();
        assert_eq!(stamp.len(), "2026_11_22_01_02_03".len());
        assert!(stamp.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
        assert!(!random.is_empty() && random.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(fs::symlink_metadata(target.join(name)).unwrap().permissions().mode() & 0o777, 0o755);

        assert_eq!(fs::read_link(target.join(DATA_DIR)).unwrap(), PathBuf::from(name));
        assert_eq!(fs::read_link(target.join("app.conf")).unwrap(), PathBuf::from("..data/app.conf"));
        assert_eq!(fs::read_link(target.join("conf.d")).unwrap(), PathBuf::from("..data/conf.d"));
        assert_eq!(fs::read_to_string(target.join("app.conf")).unwrap(), "a=1");
        assert_eq!(fs::read_to_string(target.join("conf.d/extra")).unwrap(), "x");
        assert_eq!(fs::metadata(target.join("conf.d/extra")).unwrap().permissions().mode() & 0o777, 0o400);
        assert_eq!(entries(target), vec![name.clone(), "..data".to_string(), "app.conf".into(), "conf.d".into()]);
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let files = payload(&[("a", "1", 0o644), ("b/c", "2", 0o644)]);
        assert!(write_none(dir.path(), &files).unwrap());
        let before = timestamped(dir.path());
        assert!(!write_none(dir.path(), &files).unwrap());
        assert_eq!(timestamped(dir.path()), before);
    }

    #[test]
    fn a_changed_mode_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_none(dir.path(), &payload(&[("a", "1", 0o644)])).unwrap());
        assert!(write_none(dir.path(), &payload(&[("a", "1", 0o600)])).unwrap());
        assert_eq!(fs::metadata(dir.path().join("a")).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn an_update_swaps_directories_and_drops_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        write_none(target, &payload(&[("keep", "1", 0o644), ("old", "x", 0o644), ("sub/old", "y", 0o644)])).unwrap();
        let first = timestamped(target);
        assert!(write_none(target, &payload(&[("keep", "2", 0o644), ("new", "z", 0o644)])).unwrap());
        let second = timestamped(target);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "2");
        assert_eq!(fs::read_to_string(target.join("new")).unwrap(), "z");
        assert!(fs::symlink_metadata(target.join("old")).is_err());
        assert!(fs::symlink_metadata(target.join("sub")).is_err());
        assert!(fs::symlink_metadata(target.join(DATA_DIR_TMP)).is_err());
    }

    #[test]
    fn an_open_file_keeps_its_old_content_across_an_update() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        write_none(target, &payload(&[("k", "old", 0o644)])).unwrap();
        // What a subPath bind mount holds: the file the link resolved to then.
        let pinned = fs::canonicalize(target.join("k")).unwrap();
        let mut held = fs::File::open(&pinned).unwrap();
        write_none(target, &payload(&[("k", "new", 0o644)])).unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut held, &mut text).unwrap();
        assert_eq!(text, "old");
        assert_eq!(fs::read_to_string(target.join("k")).unwrap(), "new");
    }

    #[test]
    fn an_empty_payload_leaves_only_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        write_none(dir.path(), &payload(&[("a", "1", 0o644)])).unwrap();
        assert!(write_none(dir.path(), &Payload::new()).unwrap());
        let names = entries(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&DATA_DIR.to_string()));
    }

    #[test]
    fn paths_that_could_escape_or_collide_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "..data", "..foo/bar", &"x".repeat(256)] {
            assert!(validate_path(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "a/b", "..", "a/.b", ".hidden", "a//b"] {
            if good == ".." {
                // A bare `..` element is refused as a backstep.
                assert!(validate_path(good).is_err());
                continue;
            }
            assert!(validate_path(good).is_ok(), "{good:?} should pass");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(write_none(dir.path(), &payload(&[("../escape", "x", 0o644)])).is_err());
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing is written for an invalid payload");
    }

    #[test]
    fn an_fs_group_owns_the_new_tree_with_setgid_directories() {
        let dir = tempfile::tempdir().unwrap();
        // A group the test process may give files to: its own.
        let gid = std::os::unix::fs::MetadataExt::gid(&fs::metadata(dir.path()).unwrap());
        write(dir.path(), &payload(&[("sub/f", "1", 0o440)]), Some(gid)).unwrap();
        let ts = fs::canonicalize(dir.path().join(DATA_DIR)).unwrap();
        assert_eq!(fs::metadata(&ts).unwrap().permissions().mode() & 0o7777, 0o2755);
        assert_eq!(fs::metadata(ts.join("sub")).unwrap().permissions().mode() & 0o2000, 0o2000);
        assert_eq!(fs::metadata(ts.join("sub/f")).unwrap().permissions().mode() & 0o7777, 0o440);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&fs::metadata(ts.join("sub/f")).unwrap()), gid);
    }

    #[test]
    fn paths_are_cleaned_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        write_none(dir.path(), &payload(&[("./a//b/", "1", 0o644)])).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a/b")).unwrap(), "1");
    }
}
