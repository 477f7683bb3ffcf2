//! Where the binaries under test are: next to the test executable.

use std::path::PathBuf;

/// `target/<profile>/`, found from the test executable
/// (`target/<profile>/deps/<test>-<hash>`), or `CRONSUN_TEST_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRONSUN_TEST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the test executable is in a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

fn locate(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{name} not found at {}: run `cargo build --workspace --bins` first \
         (or point CRONSUN_TEST_BIN_DIR at the directory holding cronsund and cronsun)",
        path.display()
    );
    path
}

/// Path of the `cronsund` daemon binary; panics with how to build it when missing.
pub fn cronsund() -> PathBuf {
    locate("cronsund")
}

/// Path of the `cronsun` CLI binary; panics with how to build it when missing.
pub fn cronsun() -> PathBuf {
    locate("cronsun")
}
