//! `sqlx::migrate!` embeds the migrations at compile time but is not re-run when one is added:
//! this makes a new file in `migrations/` rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
