//! The command line shared by this crate's examples (positional arguments only; each example's
//! `USAGE` names them).

use std::ops::RangeInclusive;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// Sets up the allocator and the worker threads (`DDSSM_THREADS`), then returns the positional
/// arguments, refused with `usage` unless their number lies in `counts`. An example that takes
/// options removes them with [`take_option`] before calling [`check_count`] itself.
#[allow(dead_code)] // an example with options starts with `setup` and `check_count`
pub fn start(usage: &str, counts: RangeInclusive<usize>) -> Result<Vec<String>> {
    setup()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    check_count(&args, usage, counts)?;
    Ok(args)
}

/// The allocator and worker-thread setup of [`start`], alone.
pub fn setup() -> Result<()> {
    ddssm_tensor_ops::tune_allocator();
    ddssm_tensor_ops::configure_threads(None).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Refuses `args` with `usage` unless their number lies in `counts`.
pub fn check_count(args: &[String], usage: &str, counts: RangeInclusive<usize>) -> Result<()> {
    if !counts.contains(&args.len()) {
        bail!("{usage}");
    }
    Ok(())
}

/// Removes `--name VALUE` from `args` and returns the value parsed, or `None` when the option is
/// absent; a missing or unparsable value is an error naming the option.
#[allow(dead_code)] // not every example takes an option
pub fn take_option<T: FromStr>(args: &mut Vec<String>, name: &str, usage: &str) -> Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match args.iter().position(|a| a == name) {
        Some(i) if i + 1 < args.len() => {
            let v = args.remove(i + 1);
            args.remove(i);
            Ok(Some(
                v.parse::<T>()
                    .with_context(|| format!("{name}: cannot read {v:?}"))?,
            ))
        }
        Some(_) => bail!("{name} needs a value\n{usage}"),
        None => Ok(None),
    }
}

/// Positional argument `i` parsed, or `default` when it is absent; a value that does not parse is
/// an error naming `what` (the argument's name in the usage line).
pub fn arg_or<T: FromStr>(args: &[String], i: usize, default: T, what: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match args.get(i) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{what}: cannot read {v:?}")),
        None => Ok(default),
    }
}

/// Positional argument `i` (present: [`start`] checked the count) parsed; a value that does not
/// parse is an error naming `what`.
#[allow(dead_code)] // not every example has a required number
pub fn arg<T: FromStr>(args: &[String], i: usize, what: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    args[i]
        .parse()
        .with_context(|| format!("{what}: cannot read {:?}", args[i]))
}
