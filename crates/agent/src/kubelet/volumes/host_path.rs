//! hostPath type checks, as the kubelet makes them before it hands the path to a
//! container: `DirectoryOrCreate` and `FileOrCreate` create what is missing, the
//! other types only check, and `""` checks nothing.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Checks (or creates) `path` as `type_` wants it; the error is the kubelet's
/// message.
pub(crate) fn check_type(path: &Path, type_: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path).ok();
    let file_type = meta.as_ref().map(|m| m.file_type());
    let is = |check: fn(&fs::FileType) -> bool| file_type.as_ref().is_some_and(check);
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => make_dir(path),
        "DirectoryOrCreate" | "Directory" if is(fs::FileType::is_dir) => Ok(()),
        "DirectoryOrCreate" | "Directory" => Err(format!("hostPath type check failed: {shown} is not a directory")),
        "FileOrCreate" if meta.is_none() => make_file(path),
        "FileOrCreate" | "File" if is(fs::FileType::is_file) => Ok(()),
        "FileOrCreate" | "File" => Err(format!("hostPath type check failed: {shown} is not a file")),
        "Socket" if is(FileTypeExt::is_socket) => Ok(()),
        "Socket" => Err(format!("hostPath type check failed: {shown} is not a socket file")),
        "CharDevice" if is(FileTypeExt::is_char_device) => Ok(()),
        "CharDevice" => Err(format!("hostPath type check failed: {shown} is not a character device")),
        "BlockDevice" if is(FileTypeExt::is_block_device) => Ok(()),
        "BlockDevice" => Err(format!("hostPath type check failed: {shown} is not a block device")),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// `mkdir -p` with mode 0755 (less the umask), as upstream's `MkdirAll(path, 0755)`.
fn make_dir(path: &Path) -> Result<(), String> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(path).map_err(|e| format!("mkdir {}: {}", path.display(), os_message(&e)))
}

/// An empty file with mode 0644; the parent directory must exist, as upstream.
fn make_file(path: &Path) -> Result<(), String> {
    match fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("open {}: {}", path.display(), os_message(&e))),
    }
}

/// The OS error text without Rust's ` (os error N)` suffix, as Go prints it.
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn directory_or_create_makes_missing_directories_with_0755() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c");
        check_type(&path, "DirectoryOrCreate").unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.is_dir());
        // 0755 less a umask that at most removes group/other write.
        assert_eq!(meta.permissions().mode() & 0o700, 0o700);
        assert_eq!(meta.permissions().mode() & 0o022, 0);
        // And accepts an existing one.
        check_type(&path, "DirectoryOrCreate").unwrap();
        check_type(&path, "Directory").unwrap();
    }

    #[test]
    fn file_or_create_makes_an_empty_file_but_not_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        check_type(&file, "FileOrCreate").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"");
        fs::write(&file, "keep").unwrap();
        check_type(&file, "FileOrCreate").unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep");
        check_type(&file, "File").unwrap();
        let orphan = dir.path().join("missing/f.txt");
        let err = check_type(&orphan, "FileOrCreate").unwrap_err();
        assert!(err.starts_with(&format!("open {}: no such file or directory", orphan.display())), "{err}");
    }

    #[test]
    fn wrong_kinds_of_file_are_refused_with_the_kubelet_messages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "").unwrap();
        let d = dir.path();
        let cases = [
            (file.as_path(), "Directory", format!("hostPath type check failed: {} is not a directory", file.display())),
            (file.as_path(), "DirectoryOrCreate", format!("hostPath type check failed: {} is not a directory", file.display())),
            (d, "File", format!("hostPath type check failed: {} is not a file", d.display())),
            (d, "FileOrCreate", format!("hostPath type check failed: {} is not a file", d.display())),
            (file.as_path(), "Socket", format!("hostPath type check failed: {} is not a socket file", file.display())),
            (file.as_path(), "CharDevice", format!("hostPath type check failed: {} is not a character device", file.display())),
            (file.as_path(), "BlockDevice", format!("hostPath type check failed: {} is not a block device", file.display())),
            (file.as_path(), "Pipe", "Pipe is an invalid volume type".to_string()),
        ];
        for (path, kind, want) in cases {
            assert_eq!(check_type(path, kind).unwrap_err(), want);
        }
        let missing = d.join("nope");
        assert!(check_type(&missing, "Directory").is_err());
        assert!(check_type(&missing, "File").is_err());
        // No type: no check, nothing created.
        check_type(&missing, "").unwrap();
        assert!(!missing.exists());
    }

    #[test]
    fn devices_and_sockets_are_recognised() {
        check_type(Path::new("/dev/null"), "CharDevice").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check_type(&sock, "Socket").unwrap();
    }
}
