//! The `keys` subcommands: create, list and revoke API keys.
use clap::Subcommand;

use super::parse_non_empty;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for a tenant and print it, this one time only
    ///
    /// Save the printed key right away: llmopsd keeps only its SHA-256 hash and cannot show it again (a lost
    /// key is revoked and replaced). Once any key exists, llmopsd in `auth.mode = "auto"` requires a valid key
    /// on every HTTP request. Scripts: `llmopsctl keys create --tenant acme --json | jq -r .secret`.
    Create {
        /// The tenant the key's requests count as (in traces and tenant:NAME budgets)
        #[arg(long, value_name = "TENANT", value_parser = parse_non_empty)]
        tenant: String,
        /// A label to tell keys apart, e.g. who or what uses it
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Every key (never the keys themselves): id, tenant, name, when created, source, whether revoked
    ///
    /// SOURCE is "store" for keys made with `keys create` and "config" for `[[auth.keys]]` in the config file.
    /// The last line says whether requests without a valid key are refused now.
    List,
    /// Revoke a key made with `keys create`: requests sending it get 401 from then on
    ///
    /// Exits 1 when no key has that id, or for a config-file key (remove it from the config instead).
    Revoke {
        /// The key's id (the ID column of `llmopsctl keys list`)
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use super::*;

    #[test]
    fn keys_take_a_subcommand_and_budgets_a_watch_flag() {
        let cli = parse(&["keys", "create", "--tenant", "acme", "--name", "ci"]).expect("parses");
        assert!(
            matches!(&cli.command, Command::Keys { command: KeysCommand::Create { tenant, name: Some(name) } }
                if tenant == "acme" && name == "ci"),
            "{cli:?}"
        );
        assert!(parse(&["keys", "create"]).is_err(), "the tenant is required");
        assert!(parse(&["keys", "create", "--tenant", " "]).is_err(), "the tenant must not be blank");
        assert!(parse(&["keys"]).is_err(), "a keys subcommand is required");
        let cli = parse(&["keys", "list", "--json"]).expect("parses");
        assert!(matches!(cli.command, Command::Keys { command: KeysCommand::List }) && cli.json, "{cli:?}");
        let cli = parse(&["keys", "revoke", "key-1"]).expect("parses");
        assert!(matches!(&cli.command, Command::Keys { command: KeysCommand::Revoke { id } } if id == "key-1"));
        assert!(parse(&["keys", "revoke"]).is_err(), "the id is required");
        assert!(matches!(parse(&["budgets"]).expect("parses").command, Command::Budgets { watch: false }));
        assert!(matches!(parse(&["budgets", "--watch"]).expect("parses").command, Command::Budgets { watch: true }));
    }
}
