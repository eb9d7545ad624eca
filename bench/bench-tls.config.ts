/**
 * The Postern configuration the TLS scenarios of `npm run bench` start the server with
 * (`postern serve --config bench/bench-tls.config.ts`, see bench/tls.ts): a STARTTLS listener
 * (role smtp, TLS "may") and an implicit TLS listener (role submissions), both on 127.0.0.1,
 * with one certificate.
 *
 * The harness passes everything that changes through the environment:
 *
 * - `POSTERN_BENCH_PORT`: the STARTTLS listener's port (default 12525).
 * - `POSTERN_BENCH_IMPLICIT_PORT`: the implicit TLS listener's port (default 12465).
 * - `POSTERN_BENCH_TLS_CERT`, `POSTERN_BENCH_TLS_KEY`: PEM files of the certificate and its key.
 * - `POSTERN_BENCH_STATE`: the state directory (default `postern-bench-tls` under the OS temp dir).
 * - `POSTERN_BENCH_WORKERS`: a positive integer or `auto` (default 1).
 *
 * Exported as a plain object rather than through `defineConfig`, so that this file type-checks
 * whatever stage the TLS settings' schema is at; `postern serve` validates it either way.
 */
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const port = Number(process.env["POSTERN_BENCH_PORT"] ?? "12525")
const implicitPort = Number(process.env["POSTERN_BENCH_IMPLICIT_PORT"] ?? "12465")

const stateDirectory = process.env["POSTERN_BENCH_STATE"] ?? NodePath.join(NodeOs.tmpdir(), "postern-bench-tls")

const workersSetting = process.env["POSTERN_BENCH_WORKERS"] ?? "1"
const workers: number | "auto" = workersSetting === "auto" ? "auto" : Number(workersSetting)

export default {
  hostname: "bench.postern.test",
  listeners: [
    { address: "127.0.0.1", port, role: "smtp", tls: "may" },
    { address: "127.0.0.1", port: implicitPort, role: "submissions" }
  ],
  tls: {
    certificate: process.env["POSTERN_BENCH_TLS_CERT"] ?? "bench-cert.pem",
    key: process.env["POSTERN_BENCH_TLS_KEY"] ?? "bench-key.pem",
    minVersion: "TLSv1.2",
    maxVersion: "TLSv1.3"
  },
  stateDirectory,
  localDomains: [{ domain: "discard.test", users: "*", transport: "discard" }],
  limits: { connections: 30_000, connectionsPerClient: 30_000 },
  log: { fsync: (process.env["POSTERN_BENCH_FSYNC"] ?? "interval") as "always" | "interval" | "never" },
  workers
}
