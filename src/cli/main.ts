#!/usr/bin/env node
/** `dvs`: the command line of DVS. */
import { Command, InvalidArgumentError } from 'commander';
import { runDemo } from './demo.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

const program = new Command().name('dvs').description('DVS: a Distributed Virtualization System').version('0.1.0');

program
  .command('demo')
  .description('run a small DC in this process: a data-store server, a client, a clock task, and the process tables')
  .option('--requests <n>', 'PUT requests the client sends', positiveInt, 1000)
  .option('--bulk-bytes <n>', 'bytes the client hands over through a grant', positiveInt, 1024 * 1024)
  .action(async (opts: { requests: number; bulkBytes: number }) => {
    await runDemo({ requests: opts.requests, bulkBytes: opts.bulkBytes, log: (line) => console.log(line) });
  });

await program.parseAsync();
