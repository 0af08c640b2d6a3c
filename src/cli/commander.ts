/**
 * commander, in one place: `wq` runs it from the CommonJS bundle
 * (rollup.config.js), which bundles it with the rest of the CLI.
 */
export { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
