//! The sentinel of the learning tests.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::fs::TempDir;

/// A marker every agent of the learning tests loads: a profile (`learn-sentinel`) for one tiny
/// script, which reads a file its profile does not allow. Once that alert is out, every alert
/// of what happened before is out too.
pub struct Sentinel {
    script: PathBuf,
}

impl Sentinel {
    /// Writes the script and its profile (into the agent's `profiles` directory).
    pub fn write(dir: &Path, profiles: &Path) -> Result<Self, String> {
        let script = dir.join(format!("sentinel-{}.py", crate::random_hex(4)));
        let w = |p: &Path, t: &str| {
            fs::write(p, t).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        w(&script, "import sys\nopen(sys.argv[1], 'rb').read()\n")?;
        w(
            &profiles.join("learn-sentinel.yaml"),
            &format!(
                "profile: learn-sentinel\nmatch:\n  program: [{:?}]\nallow:\n  exec: [\"/usr/bin/python3*\"]\n",
                script.display().to_string()
            ),
        )?;
        Ok(Self { script })
    }

    /// Runs the sentinel and waits for its alert.
    #[track_caller]
    pub fn settle<F>(&self, agent: &crate::rules::RulesAgent<F>) {
        let dir = TempDir::new("sentinel");
        let marker = dir.join(format!("marker-{}", crate::random_hex(6)));
        fs::write(&marker, "x").expect("marker file");
        let marker = crate::path_str(&marker);
        let mut child = agent.spawn(
            Command::new("/usr/bin/python3")
                .arg(&self.script)
                .arg(&marker),
        );
        child.finish_ok(crate::TIMEOUT);
        agent.wait_alert(crate::TIMEOUT, "the sentinel's profile.read", |a| {
            a["rule"] == "profile.read" && a["event"]["path"] == marker.as_str()
        });
    }
}
