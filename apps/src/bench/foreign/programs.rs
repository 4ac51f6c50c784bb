//! The Go programs of the `go` target: written from the sources embedded in this binary into a
//! scratch directory and built there with `go build`, offline (they need only the standard
//! library).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::process::Command;

const RESPONDER: &str = include_str!("responder.go");
const LOAD: &str = include_str!("load.go");
const SERVER: &str = include_str!("server.go");
const SERVER_CONTROL: &str = include_str!("control.go");
const GO_MOD: &str = "module ssebench\n\ngo 1.19\n";

/// Whether `go version` runs.
pub async fn go_installed() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// The built programs, in a scratch directory removed when this is dropped.
#[derive(Debug)]
pub struct Programs {
    dir: PathBuf,
    /// The sessions answering requests (`responder.go`).
    pub responder: PathBuf,
    /// The callers of `/trigger` (`load.go`).
    pub load: PathBuf,
    /// The server written as the Go original's (`server.go`, `control.go`).
    pub server: PathBuf,
}

impl Drop for Programs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Programs {
    /// Writes the sources into a fresh scratch directory and `go build`s each program.
    pub async fn build() -> anyhow::Result<Programs> {
        let dir = std::env::temp_dir()
            .join(format!("sse-apps-bench-go-{}", uuid::Uuid::new_v4().simple()));
        // Made first, so that a failure below still removes the directory.
        let programs = Programs {
            responder: dir.join("responder-bin"),
            load: dir.join("load-bin"),
            server: dir.join("server-bin"),
            dir,
        };
        let sources = [
            ("go.mod", GO_MOD),
            ("responder/main.go", RESPONDER),
            ("load/main.go", LOAD),
            ("server/main.go", SERVER),
            ("server/control.go", SERVER_CONTROL),
        ];
        for (path, text) in sources {
            let path = programs.dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        for (output, package) in [
            (&programs.responder, "./responder"),
            (&programs.load, "./load"),
            (&programs.server, "./server"),
        ] {
            go_build(&programs.dir, output, package).await?;
        }
        Ok(programs)
    }
}

/// `go build -o output package` in `dir`, offline (the programs need only the standard library).
async fn go_build(dir: &Path, output: &Path, package: &str) -> anyhow::Result<()> {
    let mut command = Command::new("go");
    command
        .current_dir(dir)
        .args(["build", "-o"])
        .arg(output)
        .arg(package)
        .env("GOPROXY", "off")
        // Only this module: no go.work found in a parent directory (another user may plant one
        // in /tmp), no toolchain download, no flags from the environment.
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .stdin(Stdio::null());
    // Go needs a build cache; without a home directory to keep one in, the scratch directory's.
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        command.env("GOCACHE", dir.join("cache"));
    }
    let built = command.output().await.context("running go build")?;
    anyhow::ensure!(
        built.status.success(),
        "go build {package} failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Ok(())
}
