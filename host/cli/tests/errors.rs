//! docs/ERRORS.md against the code: one row per code of the core's list, in order,
//! whose HTTP status is the server's and whose exit code is the CLI's.

use tapeseal_core::ErrorCode;

#[test]
fn the_error_table_matches_the_server_and_the_cli() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ERRORS.md"))
        .expect("docs/ERRORS.md");
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), ErrorCode::ALL.len(), "one row per code");
    for (code, row) in ErrorCode::ALL.iter().zip(&rows) {
        assert_eq!(row[1], format!("`{}`", code.name()), "rows in ALL order");
        assert_eq!(
            row[3],
            tapeseal_server::error::status_of(*code)
                .as_u16()
                .to_string(),
            "HTTP status of {}",
            code.name()
        );
        assert_eq!(
            row[4],
            tapeseal::exit_code(*code).to_string(),
            "exit code of {}",
            code.name()
        );
    }
}
