//! `cronsun generate-docs DIR` (hidden): writes the man pages (`man1/`,
//! one per command and subcommand, from the same clap definitions as
//! `--help`) and bash, zsh and fish completions (`completions/`), for the
//! packages (`scripts/package.sh`).

use std::path::Path;

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Writes every page and completion under `dir`.
pub fn generate(mut cmd: clap::Command, dir: &Path) -> Result<()> {
    let man = dir.join("man1");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    cmd.build();
    write_pages(&cmd, &man)?;
    let comp = dir.join("completions");
    std::fs::create_dir_all(&comp).with_context(|| format!("cannot create {}", comp.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "cronsun", &comp).with_context(|| {
            format!("cannot write the {shell} completion to {}", comp.display())
        })?;
    }
    Ok(())
}

/// `cronsun.1`, then `cronsun-job.1`, `cronsun-job-ls.1`, ... for every
/// visible subcommand (a built command's display names are those paths).
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .with_context(|| format!("cannot render {}", path.display()))?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, dir)?;
    }
    Ok(())
}
