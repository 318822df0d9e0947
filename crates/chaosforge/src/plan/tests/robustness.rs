//! Mangled files never panic the pipeline and always get located diagnostics.

use super::*;

// === robustness ===

const BASE: &str = include_str!("../../../../chaosforge-cli/tests/data/valid/base.yaml");

#[test]
fn the_base_file_is_valid() {
    let p = plan(BASE, None);
    assert_eq!(p.faults[0].targets, ["payments"]);
}

/// One way to damage a file.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteByte(usize),
    InsertByte(usize, u8),
    ReplaceByte(usize, u8),
    DuplicateLine(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    /// Replaces the value after the `n`-th `: ` (a scalar, or the start of a flow value).
    ReplaceScalar(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to YAML get extra weight over arbitrary ones.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b": -{}[],#&*!|>'\"%@`\n\t0123456789.".to_vec()),
    ];
    let text = prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        prop::sample::select(vec![
            "",
            "~",
            "null",
            "-1",
            "0",
            "0s",
            "1e999",
            "99999999999999999999999",
            "[]",
            "{}",
            "*a",
            "&a x",
            "!!int x",
            "\"",
            "'",
            "- x",
            "{ a: [",
            "100%",
            "-5%",
            "NaN",
            ".nan",
            "18446744073709551616",
            "0x10",
            "true",
            "\"\\ud800\"",
            "<<: *a",
            "? x",
        ])
        .prop_map(String::from),
    ];
    prop_oneof![
        any::<prop::sample::Index>().prop_map(|i| Mutation::DeleteByte(i.index(BASE.len()))),
        (any::<prop::sample::Index>(), byte.clone())
            .prop_map(|(i, b)| Mutation::InsertByte(i.index(BASE.len() + 1), b)),
        (any::<prop::sample::Index>(), byte)
            .prop_map(|(i, b)| Mutation::ReplaceByte(i.index(BASE.len()), b)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), text).prop_map(|(n, t)| Mutation::ReplaceScalar(n, t)),
    ]
}

/// Applies `m` to `bytes`; indices wrap so every mutation applies to whatever is left.
fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::DeleteByte(i) if !bytes.is_empty() => {
            bytes.remove(i % bytes.len());
        }
        Mutation::DeleteByte(_) => {}
        Mutation::InsertByte(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
        Mutation::ReplaceByte(i, b) if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[i % n] = *b;
        }
        Mutation::ReplaceByte(..) => {}
        Mutation::DuplicateLine(_) | Mutation::DeleteLine(_) | Mutation::SwapLines(..) => {
            let mut lines: Vec<Vec<u8>> =
                bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let n = lines.len();
            match m {
                Mutation::DuplicateLine(i) => {
                    let l = lines[i % n].clone();
                    lines.insert(i % n, l);
                }
                Mutation::DeleteLine(i) if n > 1 => {
                    lines.remove(i % n);
                }
                Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
                _ => {}
            }
            *bytes = lines.join(&b'\n');
        }
        Mutation::ReplaceScalar(k, text) => {
            let starts: Vec<usize> = bytes
                .windows(2)
                .enumerate()
                .filter(|(_, w)| *w == b": ")
                .map(|(i, _)| i + 2)
                .collect();
            if starts.is_empty() {
                return;
            }
            let start = starts[k % starts.len()];
            // The value runs to the next `,`, `}`, `]` or end of line.
            let end = bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b'\n'))
                .map_or(bytes.len(), |p| start + p);
            bytes.splice(start..end, text.bytes());
        }
    }
}

/// Parses, decodes and compiles `text`; checks that every diagnostic points into the file.
fn check_diagnostics_are_located(text: &str) -> Result<(), TestCaseError> {
    let result = Document::parse("m.yaml", text).and_then(|doc| {
        let spec: ExperimentSpec = crate::de::decode(&doc)?;
        compile(&doc, &spec, Some(1)).map(|_| ())
    });
    let Err(diags) = result else { return Ok(()) };
    prop_assert!(!diags.is_empty(), "an error without a diagnostic");
    // A span may sit just after the last newline (end of file), hence the `+ 1`.
    let last_line = text.bytes().filter(|&b| b == b'\n').count() + 1;
    for d in diags.iter() {
        let Some(span) = d.span else {
            return Err(TestCaseError::fail(format!(
                "no span: {d}\n--- file ---\n{text}"
            )));
        };
        prop_assert!(
            span.line >= 1 && span.line as usize <= last_line,
            "line {} outside 1..={last_line}: {d}\n--- file ---\n{text}",
            span.line
        );
        prop_assert!(
            span.offset + span.len <= text.len(),
            "span {span:?} past the end ({} bytes): {d}",
            text.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mangled_files_never_panic_and_get_located_diagnostics(
        muts in prop::collection::vec(mutation(), 1..4)
    ) {
        let mut bytes = BASE.as_bytes().to_vec();
        for m in &muts {
            apply(&mut bytes, m);
        }
        // Files are read as UTF-8 text; invalid bytes never reach the parser.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        check_diagnostics_are_located(&text)?;
    }
}
