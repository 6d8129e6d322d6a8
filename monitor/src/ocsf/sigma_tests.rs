//! A Sigma alert as a Detection Finding: the rule is the analytic.

use serde_json::json;

use super::{alert_to_ocsf, native_alerts};

#[test]
fn a_sigma_alert_names_its_rule_as_the_analytic() {
    let (_, native) = native_alerts()
        .into_iter()
        .find(|(n, _)| *n == "alert sigma")
        .expect("sample");
    let f = alert_to_ocsf(&native).expect("converts");
    let info = &f["finding_info"];
    assert_eq!(info["title"], "Linux Base64 Encoded Pipe to Shell");
    assert_eq!(
        info["analytic"],
        json!({
            "name": "Linux Base64 Encoded Pipe to Shell",
            "uid": "f4bbd493-b796-416e-bbf2-121235348529",
            "type_id": 1, "type": "Rule", "category": "Sigma",
        })
    );
    assert_eq!(info["types"], json!(["Detection", "Sigma"]));
    assert_eq!(info["src_url"], "https://github.com/arget13/DDexec");
    assert_eq!(info["attacks"][0]["sub_technique"]["uid"], "T1059.004");
    assert_eq!(f["unmapped"]["sigma"], native["sigma"]);
    assert_eq!(f["severity_id"], 4);

    // Every other alert keeps its rule as the analytic, and has no `sigma`.
    let other = alert_to_ocsf(&native_alerts()[0].1).expect("converts");
    assert_eq!(other["finding_info"]["analytic"]["uid"], "credential-read");
    assert!(other["unmapped"].get("sigma").is_none());
}
