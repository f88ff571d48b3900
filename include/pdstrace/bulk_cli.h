#ifndef PDS_TRACE_BULK_CLI_H
#define PDS_TRACE_BULK_CLI_H

/* `pds-trace bulk INPUT.csv -o OUTPUT.csv [--format simple|pds-mesh] [--rate N]
 * [--concurrency N] [--write-back] [--resume] [--config FILE]` (DESIGN.md §3): argv holds
 * what follows "bulk". Returns the exit code: 0 when every row is in the output (bad rows
 * included), 1 when the file could not be processed or the run was interrupted (one line
 * on stderr says why), 2 for bad usage or a bad setting. */
int bulk_cli(int argc, char **argv);

#endif
