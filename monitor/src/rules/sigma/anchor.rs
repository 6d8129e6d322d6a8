//! A workaround for rsigma 0.23 (every version published): a `startswith` or `endswith` value
//! with a wildcard is compiled to a regex anchored at the wrong end (`Image|endswith: '/ba?h'`
//! becomes `^/ba.h`, which never matches `/usr/bin/bash`). Such an item is rewritten to the
//! equivalent form without the modifier: `*` before every value of an `endswith`, after every
//! value of a `startswith`, which rsigma anchors correctly.

use rsigma_parser::{Detection, DetectionItem, Modifier, SigmaValue, SpecialChar, StringPart};

/// Rewrites every affected item under `d`.
pub fn fix(d: &mut Detection) {
    match d {
        Detection::AllOf(items) => items.iter_mut().for_each(fix_item),
        Detection::AnyOf(ds) | Detection::And(ds) => ds.iter_mut().for_each(fix),
        Detection::ArrayMatch { body, .. } => fix(body),
        _ => {}
    }
}

fn has_wildcard(v: &SigmaValue) -> bool {
    matches!(v, SigmaValue::String(s) if !s.is_plain())
}

fn fix_item(item: &mut DetectionItem) {
    let mods = &item.field.modifiers;
    // Modifiers that change what the value is: left alone (and never combined with these).
    let other = mods.iter().any(|m| {
        matches!(
            m,
            Modifier::Re | Modifier::Cidr | Modifier::Base64 | Modifier::Base64Offset
        )
    });
    let (starts, ends) = (
        mods.contains(&Modifier::StartsWith),
        mods.contains(&Modifier::EndsWith),
    );
    if other || !(starts || ends) || !item.values.iter().any(has_wildcard) {
        return;
    }
    item.field
        .modifiers
        .retain(|m| !matches!(m, Modifier::StartsWith | Modifier::EndsWith));
    let star = StringPart::Special(SpecialChar::WildcardMulti);
    for v in &mut item.values {
        if let SigmaValue::String(s) = v {
            if ends {
                s.parts.insert(0, star.clone());
            } else {
                s.parts.push(star.clone());
            }
        }
    }
}
