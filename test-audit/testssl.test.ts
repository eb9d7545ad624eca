/**
 * The TLS audit: testssl.sh (Debian package testssl.sh) against the daemon's STARTTLS port and
 * its implicit TLS port, with DNS confined to loopback (a private mount namespace whose
 * resolv.conf points at 127.0.0.1, see TESTING.md). No finding may be HIGH or CRITICAL, and
 * SSLv2, SSLv3, TLS 1.0 and TLS 1.1 must not be offered.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Certificates from "../test/support/Certificates.ts"
import { type Daemon, startDaemon } from "../test/support/Daemon.ts"

interface Finding {
  readonly id: string
  readonly severity: string
  readonly finding: string
}

const testssl = ["testssl", "testssl.sh"].find((name) =>
  ChildProcess.spawnSync("sh", ["-c", `command -v ${name}`]).status === 0
)

/** Runs testssl.sh with the given target arguments and returns its JSON findings. */
const audit = (caFile: string, args: ReadonlyArray<string>): Array<Finding> => {
  if (testssl === undefined) throw new Error("testssl.sh is not installed (Debian package testssl.sh); .ci/run installs it")
  const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-audit-"))
  const json = Path.join(directory, "findings.json")
  const resolv = Path.join(directory, "resolv.conf")
  Fs.writeFileSync(resolv, "nameserver 127.0.0.1\n")
  const command = [
    testssl,
    "--quiet",
    "--color",
    "0",
    "--warnings",
    "batch",
    "--jsonfile",
    json,
    "--ip",
    "one",
    // The test CA is the trust anchor, as a real one would be in the system store.
    "--add-ca",
    caFile,
    ...args
  ]
  const run = ChildProcess.spawnSync(
    "unshare",
    ["-m", "--", "sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"", resolv, ...command],
    { encoding: "utf8", timeout: 600_000, maxBuffer: 64 * 1024 * 1024 }
  )
  if (!Fs.existsSync(json)) {
    throw new Error(`testssl.sh wrote no findings (exit ${run.status}): ${run.stderr.slice(-2000)}${run.stdout.slice(-2000)}`)
  }
  const findings = JSON.parse(Fs.readFileSync(json, "utf8")) as Array<Finding>
  Fs.rmSync(directory, { recursive: true, force: true })
  return findings
}

const severe = (findings: ReadonlyArray<Finding>) =>
  findings.filter((f) => f.severity === "HIGH" || f.severity === "CRITICAL").map((f) => `${f.id}: ${f.finding}`)

const protocol = (findings: ReadonlyArray<Finding>, id: string): string =>
  findings.find((f) => f.id === id)?.finding ?? `(no ${id} finding)`

const checkProtocols = (findings: ReadonlyArray<Finding>) => {
  for (const id of ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]) assert.match(protocol(findings, id), /not offered/, id)
  assert.match(protocol(findings, "TLS1_2"), /^offered/, "TLS1_2")
  assert.match(protocol(findings, "TLS1_3"), /^offered/, "TLS1_3")
}

describe("testssl.sh audit", () => {
  let daemon: Daemon
  let pki: Certificates.Pki
  beforeAll(async () => {
    pki = await Certificates.makePki(Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-audit-pki-")), {
      leaves: [{
        name: "mx",
        dns: ["mx.postern.test"],
        ips: ["127.0.0.1"],
        keyType: "ecdsa",
        revocation: { crl: "http://127.0.0.1/postern-test-ca.crl", ocsp: "http://127.0.0.1/ocsp" }
      }]
    })
    daemon = await startDaemon({
      extraListeners: [{ role: "submissions" }],
      tls: { certificate: pki.leaf("mx").certificateFile, key: pki.leaf("mx").keyFile }
    })
  })
  afterAll(async () => {
    await daemon?.dispose()
  })

  it("STARTTLS on the smtp port: no HIGH or CRITICAL finding, only TLS 1.2 and 1.3 offered", () => {
    const findings = audit(pki.ca.certificateFile, ["--starttls", "smtp", `127.0.0.1:${daemon.ports.smtp}`])
    assert.deepStrictEqual(severe(findings), [])
    checkProtocols(findings)
  })

  it("implicit TLS on the submissions port: no HIGH or CRITICAL finding, only TLS 1.2 and 1.3 offered", () => {
    const port = daemon.ports.extra[0]
    assert.isDefined(port)
    const findings = audit(pki.ca.certificateFile, [`127.0.0.1:${port}`])
    assert.deepStrictEqual(severe(findings), [])
    checkProtocols(findings)
  })
})
