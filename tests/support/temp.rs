//! A directory of test files under the system temp dir, removed on drop. `tempfile` is not a
//! dependency, and the config and secrets tests need files with exact modes and atomic rewrites.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory named after the test binary, `tag` and a counter.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "tower-webhooks-{binary}-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` with `mode` through a temporary name and a rename, so a reader (a gateway
    /// reloading, say) never sees half of it.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        let staging = self.0.join(format!("{name}.staging"));
        fs::write(&staging, content).unwrap();
        fs::set_permissions(&staging, fs::Permissions::from_mode(mode)).unwrap();
        fs::rename(&staging, &path).unwrap();
        path
    }

    /// A `#!/bin/sh` helper. Exec helpers run with an empty environment (no `PATH`), so only shell
    /// builtins and absolute paths are used.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        self.file(name, format!("#!/bin/sh\n{body}\n"), 0o700)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
