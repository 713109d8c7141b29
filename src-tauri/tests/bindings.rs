//! The front end's `ui/src/bindings.ts` is generated from the Rust types;
//! this fails when a command or type changed and the file was not
//! regenerated (`make bindings`), so the front end never calls a command
//! with the wrong shape.

#[test]
fn checked_in_bindings_are_up_to_date() {
    let want = greenlight_app::typescript_bindings().expect("bindings export");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings.ts");
    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        std::fs::write(&path, &want).expect("write bindings");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "ui/src/bindings.ts is out of date with the Rust commands and types: run `make bindings` and commit it"
    );
}
