/**
 * The Postern configuration that `npm run bench` starts the server with
 * (`postern serve --config bench/bench.config.ts`).
 *
 * The harness passes the port, a fresh state directory and the worker count through the
 * environment, so each scenario gets its own server and nothing from an earlier run:
 *
 * - `POSTERN_BENCH_PORT`: the SMTP listener's port on 127.0.0.1 (default 12525).
 * - `POSTERN_BENCH_STATE`: the state directory (default `postern-bench` under the OS temp dir);
 *   mail for maildir.test lands in its `mail/` folder.
 * - `POSTERN_BENCH_WORKERS`: a positive integer or `auto` (default 1).
 * - `POSTERN_BENCH_POLICY`: "1" adds the ten-rule rcpt stage of `policyRules.ts`.
 */
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { defineConfig } from "../src/index.ts"
import { rcptRules } from "./policyRules.ts"

const port = Number(process.env["POSTERN_BENCH_PORT"] ?? "12525")

const stateDirectory = process.env["POSTERN_BENCH_STATE"] ?? NodePath.join(NodeOs.tmpdir(), "postern-bench")

const workersSetting = process.env["POSTERN_BENCH_WORKERS"] ?? "1"
const workers: number | "auto" = workersSetting === "auto" ? "auto" : Number(workersSetting)

export default defineConfig({
  hostname: "bench.postern.test",
  listeners: [{ address: "127.0.0.1", port, role: "smtp" }],
  stateDirectory,
  localDomains: [
    { domain: "discard.test", users: "*", transport: "discard" },
    { domain: "maildir.test", users: "*", transport: "maildir" }
  ],
  // The idle scenario holds 10,000 connections from 127.0.0.1; the default per-client limit
  // (200) would refuse all but the first few hundred.
  limits: { connections: 30_000, connectionsPerClient: 30_000, recipients: 1000 },
  // Accepted mail is fsynced before its 250 whatever this says; POSTERN_BENCH_FSYNC=always also
  // fsyncs every batch of ordinary session events.
  log: { fsync: (process.env["POSTERN_BENCH_FSYNC"] ?? "interval") as "always" | "interval" | "never" },
  workers,
  // POSTERN_BENCH_POLICY=1: the ten rules of policyRules.ts at rcpt (the policy scenario).
  ...(process.env["POSTERN_BENCH_POLICY"] === "1" ? { policy: { rules: { rcpt: rcptRules } } } : {})
})
