/**
 * DKIM signing end to end: `postern dkim keygen` makes the key and prints the record; an
 * authenticated client's message from example.test is signed; the signature verifies with two
 * independent verifiers, dkimpy (Debian's python3-dkim, with the record handed to it: no DNS) and
 * OpenDKIM's opendkim-testmsg (Debian's opendkim-tools, RSA-2048 and Ed25519 keys: it looks the
 * record up with libc's resolver, confined to a zone served on 127.53.0.1:53 by a private mount
 * namespace whose /etc/resolv.conf names only that server), and with mailauth; a message altered
 * after signing fails opendkim-testmsg; mail from the Internet that merely claims the domain is
 * not signed.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Users from "../../src/auth/Users.ts"
import type * as Dns from "../../src/policy/Dns.ts"
import * as MessageAuth from "../../src/policy/MessageAuth.ts"
import { type Daemon, runPostern, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"
import { type DnsServer, serveZone } from "../support/DnsServer.ts"

const password = "signing test passphrase"

const submitScript = String.raw`
import json, smtplib, ssl, sys
port, login, data = int(sys.argv[1]), sys.argv[2] == "login", sys.argv[3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
s.ehlo()
s.starttls(context=context)
s.ehlo()
if login:
    s.login("alice", sys.argv[4])
s.mail("alice@example.test")
s.rcpt("bob@example.test")
code, msg = s.data(data.encode())
s.quit()
print(json.dumps([code, msg.decode()]))
`

/** dkimpy's verdict on a message, with the DNS answer given instead of looked up. */
const dkimpyScript = String.raw`
import sys, dkim
record = sys.argv[1].encode()
message = open(sys.argv[2], "rb").read()
def dnsfunc(name, timeout=5):
    return record if name == b"s1._domainkey.example.test." else None
print("pass" if dkim.verify(message, dnsfunc=dnsfunc) else "fail")
`

/** Runs a program to its end, with `input` (or nothing) on its standard input. */
const run = (file: string, args: ReadonlyArray<string>, input?: string | Buffer) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = ChildProcess.execFile(file, [...args], { timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }))
    // A program that exits without reading its input makes the write fail (EPIPE): its exit code tells.
    child.stdin?.on("error", () => {}).end(input)
  })

/** A python3 that has dkimpy: the one on PATH, or Debian's (where python3-dkim installs it). */
const pythonWithDkim = async (): Promise<string> => {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    if ((await run(candidate, ["-c", "import dkim"])).code === 0) return candidate
  }
  throw new Error("no python3 with the dkim module (Debian package python3-dkim; .ci/run installs it)")
}

/** opendkim-testmsg: Debian installs it in /usr/sbin, which a non-login shell's PATH may lack. */
const opendkimTestmsg = (): string => {
  const dirs = ["/usr/sbin", ...(process.env["PATH"] ?? "").split(":").filter((d) => d !== "")]
  for (const file of dirs.map((d) => Path.join(d, "opendkim-testmsg"))) {
    try {
      Fs.accessSync(file, Fs.constants.X_OK)
      return file
    } catch {
      // Not here.
    }
  }
  throw new Error("opendkim-testmsg is neither in /usr/sbin nor on PATH (Debian package opendkim-tools; .ci/run installs it)")
}

/** The server of the test zone: a loopback address no other test file uses, at the port libc asks. */
const dnsHost = "127.53.0.1"

/**
 * opendkim-testmsg's verdict on `message` (code 0 and no output: every signature verified),
 * with libc's resolver confined to the test zone: a private mount namespace (root only) in which
 * `resolvConf` replaces /etc/resolv.conf (TESTING.md).
 */
const opendkimVerify = (resolvConf: string, message: string) =>
  run("unshare", ["-m", "--", "bash", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolvConf, opendkimTestmsg()], message)

/** A key made by `postern dkim keygen` for example.test, and a daemon that signs alice's mail with it. */
interface Signer {
  readonly selector: string
  readonly keyFile: string
  /** The TXT record keygen printed, its strings joined. */
  readonly record: string
  readonly daemon: Daemon
}

const startSigner = async (selector: string, algorithm: "rsa" | "ed25519"): Promise<Signer> => {
  const keys = Fs.mkdtempSync(Path.join(Fs.realpathSync("/tmp"), "postern-dkim-"))
  const generated = await runPostern(["dkim", "keygen", "--domain", "example.test", "--selector", selector, "--algorithm", algorithm, "--out", keys])
  assert.strictEqual(generated.code, 0, generated.stderr)
  const keyFile = Path.join(keys, `example.test.${selector}.key`)
  // The record is printed as zone-file strings of at most 255 characters: join them.
  const line = generated.stdout.split("\n").find((l) => l.startsWith(`${selector}._domainkey.example.test. IN TXT `)) ?? ""
  const record = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? "").join("")
  const daemon = await startDaemon({ dkim: { sign: [{ domain: "example.test", selector, key: keyFile }] } })
  await Users.addUser(Path.join(daemon.stateDir, "users"), "alice", password)
  return { selector, keyFile, record, daemon }
}

/**
 * Submits a message from alice, authenticated, and returns it as delivered to bob. It has a Date
 * field: opendkim-testmsg refuses a message without one (RFC 5322 requires it) before it looks
 * at any signature.
 */
const submitSigned = async (daemon: Daemon, token: string) => {
  const date = new Date().toUTCString().replace("GMT", "+0000")
  const message = `From: alice@example.test\r\nTo: bob@example.test\r\nDate: ${date}\r\nSubject: ${token}\r\n\r\nSigned ${token}\r\n`
  const sent = await run("python3", ["-c", submitScript, String(daemon.ports.submission), "login", message, password])
  assert.strictEqual(sent.code, 0, sent.stderr)
  return waitForMail(daemon, "example.test", "bob", token)
}

describe("DKIM signing of mail from our own domains", () => {
  let rsa: Signer
  let ed: Signer

  beforeAll(async () => {
    const signers = Promise.all([startSigner("s1", "rsa"), startSigner("ed", "ed25519")])
    rsa = (await signers)[0]
    ed = (await signers)[1]
  })

  afterAll(async () => {
    await Promise.all([rsa, ed].map((signer) => signer?.daemon.dispose()))
    for (const signer of [rsa, ed]) if (signer !== undefined) Fs.rmSync(Path.dirname(signer.keyFile), { recursive: true, force: true })
  })

  it("keygen writes the key (mode 0600) and prints the TXT record to publish", () => {
    assert.strictEqual(Fs.statSync(rsa.keyFile).mode & 0o777, 0o600)
    assert.match(rsa.record, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/)
  })

  it("an authenticated client's message is signed, and the signature verifies with dkimpy and with mailauth", async () => {
    const delivered = await submitSigned(rsa.daemon, uniqueToken("dkim-signed"))
    assert.match(delivered.text, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/)
    const verdict = await run(await pythonWithDkim(), ["-c", dkimpyScript, rsa.record, delivered.file])
    assert.strictEqual(verdict.stdout.trim(), "pass", verdict.stderr)
    const resolve: Dns.Resolve = async (name, type) => {
      if (name === "s1._domainkey.example.test" && type === "TXT") return [[rsa.record]]
      throw Object.assign(new Error("not found"), { code: "ENOTFOUND" })
    }
    const verifier = MessageAuth.start({ sender: "alice@example.test", ip: "127.0.0.1", helo: "client.test", hostname: "check.test", resolve })
    verifier.write(Fs.readFileSync(delivered.file))
    assert.deepStrictEqual((await verifier.end()).dkim, [{ domain: "example.test", selector: "s1", result: "pass" }])
  })

  it("a message that only claims example.test, from a client that did not authenticate, is not signed", async () => {
    const token = uniqueToken("dkim-unsigned")
    const message = `From: alice@example.test\r\nSubject: ${token}\r\n\r\n${token}\r\n`
    const sent = await run("python3", ["-c", submitScript, String(rsa.daemon.ports.smtp), "anonymous", message])
    assert.strictEqual(sent.code, 0, sent.stderr)
    const delivered = await waitForMail(rsa.daemon, "example.test", "bob", token)
    assert.notInclude(delivered.text, "DKIM-Signature:")
  })

  it("keygen for Ed25519 writes the key (mode 0600) and prints a k=ed25519 record of the 32-byte key", () => {
    assert.strictEqual(Fs.statSync(ed.keyFile).mode & 0o777, 0o600)
    const p = /^v=DKIM1; k=ed25519; p=([A-Za-z0-9+/=]+)$/.exec(ed.record)?.[1] ?? ""
    assert.strictEqual(Buffer.from(p, "base64").length, 32)
  })

  describe("verified by OpenDKIM's opendkim-testmsg, the record looked up in the test zone", () => {
    let dns: DnsServer
    let resolvConf = ""

    beforeAll(async () => {
      assert.strictEqual(process.getuid?.(), 0, "opendkim-testmsg's DNS is confined by a mount namespace and a server on port 53: run as root (TESTING.md)")
      dns = await serveZone(
        { "s1._domainkey.example.test": { TXT: [rsa.record] }, "ed._domainkey.example.test": { TXT: [ed.record] } },
        { host: dnsHost, port: 53 }
      )
      resolvConf = Path.join(Fs.mkdtempSync(Path.join(Fs.realpathSync("/tmp"), "postern-resolv-")), "resolv.conf")
      Fs.writeFileSync(resolvConf, `nameserver ${dnsHost}\noptions timeout:2 attempts:2\n`)
    })

    afterAll(async () => {
      await dns?.close()
      if (resolvConf !== "") Fs.rmSync(Path.dirname(resolvConf), { recursive: true, force: true })
    })

    it.each([
      { name: "RSA-2048", algorithm: "rsa-sha256", signer: () => rsa },
      { name: "Ed25519", algorithm: "ed25519-sha256", signer: () => ed }
    ])("$name: the signature verifies, and fails once a body byte is changed", async ({ algorithm, signer }) => {
      const { daemon, selector } = signer()
      const token = uniqueToken(`dkim-opendkim-${selector}`)
      const delivered = await submitSigned(daemon, token)
      const field = /^DKIM-Signature: .*(?:\r\n[ \t].*)*/.exec(delivered.text)?.[0].replace(/\r\n[ \t]+/g, " ") ?? ""
      assert.match(field, new RegExp(`^DKIM-Signature: v=1; a=${algorithm}; c=relaxed/relaxed; d=example\\.test; .* s=${selector};`))
      const verdict = await opendkimVerify(resolvConf, delivered.text)
      assert.deepStrictEqual(verdict, { code: 0, stdout: "", stderr: "" })
      // The key came from the test zone: its server was asked.
      assert.deepInclude(dns.questions, { name: `${selector}._domainkey.example.test`, type: "TXT" })
      const altered = delivered.text.replace(`Signed ${token}`, `signed ${token}`)
      assert.notStrictEqual(altered, delivered.text)
      const refused = await opendkimVerify(resolvConf, altered)
      assert.notStrictEqual(refused.code, 0)
      assert.include(refused.stderr, "dkim_eom(): Bad signature")
    })
  })
})
