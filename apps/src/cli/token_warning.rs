//! The warning that a `--token` given on the command line is there for every local user to read
//! (`ps`, `/proc/PID/cmdline`). Not for one from `SSE_APPS_TOKEN`, which only the user and root
//! can read (`/proc/PID/environ`): clap says where each value came from.

/// Says so on stderr when the command that runs took `--token` from its command line.
pub(crate) fn warn_if_token_on_command_line(matches: &clap::ArgMatches) {
    let mut used = matches;
    while let Some((_, inner)) = used.subcommand() {
        used = inner;
    }
    let given = used.ids().any(|id| id.as_str() == "token");
    if !given || used.value_source("token") != Some(clap::parser::ValueSource::CommandLine) {
        return;
    }
    // The clients' `--token` has no file form.
    let instead = if used.try_contains_id("token_file").is_ok() {
        "--token-file PATH or SSE_APPS_TOKEN"
    } else {
        "SSE_APPS_TOKEN"
    };
    eprintln!(
        "warning: --token on the command line can be read by every local user (ps); use \
         {instead} instead"
    );
}
