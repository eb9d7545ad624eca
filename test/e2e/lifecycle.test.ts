/**
 * The daemon's life: SIGTERM answers idle sessions with 421 4.3.2 and lets a transaction in
 * DATA finish within the grace period, then exits 0; a bad configuration is refused with the
 * file, field path, value and expectation, both by `config check` and by `serve`.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, afterEach, assert, describe, it } from "@effect/vitest"
import * as Certificates from "../support/Certificates.ts"
import { type Daemon, freePorts, runPostern, sleep, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"
import { describeReply, queueIdOf, SmtpClient } from "../support/SmtpClient.ts"

describe("lifecycle", () => {
  const daemons: Array<Daemon> = []
  const clients: Array<SmtpClient> = []
  const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-e2e-config-"))

  const start = async () => {
    const daemon = await startDaemon({ timeouts: { shutdownGrace: "10s" } })
    daemons.push(daemon)
    return daemon
  }

  const connect = async (daemon: Daemon) => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    clients.push(client)
    return client
  }

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy()
    for (const daemon of daemons.splice(0)) await daemon.dispose()
  })

  afterAll(() => {
    Fs.rmSync(scratch, { recursive: true, force: true })
  })

  it("SIGTERM with an idle session open: the session gets 421 4.3.2 and is closed, the daemon exits 0", async () => {
    const daemon = await start()
    const client = await connect(daemon)
    assert.strictEqual((await client.request("EHLO client.test")).code, 250)
    const stopped = daemon.stop()
    const reply = await client.readReply(10_000)
    assert.deepStrictEqual([reply.code, reply.enhanced], [421, "4.3.2"], describeReply(reply))
    await client.expectClose()
    assert.strictEqual(await stopped, 0, daemon.output().stderr)
  })

  it("SIGTERM during DATA: the transaction still ends with 250 within the grace period, then 421 4.3.2, exit 0, and the message survives", async () => {
    const daemon = await start()
    const token = uniqueToken("drain")
    const client = await connect(daemon)
    await client.request("EHLO client.test")
    assert.strictEqual((await client.request("MAIL FROM:<sender@client.test>")).code, 250)
    assert.strictEqual((await client.request("RCPT TO:<alice@example.test>")).code, 250)
    assert.strictEqual((await client.request("DATA")).code, 354)
    await client.send(`Subject: ${token}\r\n\r\nfirst half\r\n`)
    const stopped = daemon.stop()
    await sleep(700)
    await client.send(`second half ${token}\r\n.\r\n`)
    const queued = await client.readReply(10_000)
    assert.strictEqual(queued.code, 250, describeReply(queued))
    assert.isDefined(queueIdOf(queued))
    const bye = await client.readReply()
    assert.deepStrictEqual([bye.code, bye.enhanced], [421, "4.3.2"], describeReply(bye))
    await client.expectClose()
    assert.strictEqual(await stopped, 0, daemon.output().stderr)
    // Accepted means durable: delivered before the stop, or after the next start.
    await daemon.restart()
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.include(mail.text, `first half\r\nsecond half ${token}\r\n`)
  })

  const badConfig = () => {
    const file = Path.join(scratch, "bad.config.ts")
    Fs.writeFileSync(
      file,
      `export default {\n  hostname: "mx.postern.test",\n  listeners: [{ address: "127.0.0.1", port: 99999, role: "smtp" }],\n` +
        `  stateDirectory: ${JSON.stringify(scratch)},\n  limits: { messageSize: -5 }\n}\n`
    )
    return file
  }

  const expectConfigErrors = (output: string, file: string) => {
    assert.include(output, `${file}: limits.messageSize: expected a positive integer, got -5`)
    assert.include(output, `${file}: listeners[0].port: expected an integer from 1 to 65535, got 99999`)
  }

  it("config check on a bad file prints the file, path, value and expectation, and exits non-zero", async () => {
    const file = badConfig()
    const result = await runPostern(["config", "check", file])
    assert.notStrictEqual(result.code, 0)
    expectConfigErrors(result.stdout + result.stderr, file)
  })

  it("config check on a good file prints the summary and exits 0", async () => {
    const file = Path.join(scratch, "good.config.ts")
    Fs.writeFileSync(
      file,
      `export default { hostname: "mx.postern.test", listeners: [{ port: 2525, role: "smtp" }], stateDirectory: ${
        JSON.stringify(scratch)
      } }\n`
    )
    const result = await runPostern(["config", "check", file])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.include(result.stdout, "hostname: mx.postern.test")
  })

  it("serve with a bad configuration refuses to start, with the same message", async () => {
    const file = badConfig()
    const result = await runPostern(["serve", "--config", file], 20_000)
    assert.notStrictEqual(result.code, 0)
    expectConfigErrors(result.stdout + result.stderr, file)
    assert.notInclude(result.stdout, "Postern serving as")
  })

  it("serve whose port is taken refuses to start and exits 1 naming the address, instead of restarting workers forever", async () => {
    const blocker = Net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve))
    const address = blocker.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    const state = Fs.mkdtempSync(Path.join(scratch, "taken-"))
    const file = Path.join(state, "postern.config.ts")
    Fs.writeFileSync(file, `export default ${JSON.stringify({ listeners: [{ port, role: "smtp" }], stateDirectory: state, workers: 2 })}\n`)
    try {
      const result = await runPostern(["serve", "--config", file], 30_000)
      assert.strictEqual(result.code, 1, result.stderr)
      assert.include(result.stderr, "cannot start")
      assert.include(result.stderr, String(port))
      assert.notInclude(result.stderr, "restarting it")
    } finally {
      blocker.close()
    }
  })

  it("a certificate whose key does not match stops the daemon with a message naming the file, instead of restarting workers", async () => {
    const state = Fs.mkdtempSync(Path.join(scratch, "mismatch-"))
    const pki = await Certificates.makePki(Path.join(state, "pki"), {
      leaves: [{ name: "mx", dns: ["mx.postern.test"] }, { name: "other", dns: ["other.postern.test"] }]
    })
    const [port] = await freePorts(1)
    const file = Path.join(state, "postern.config.ts")
    const config = {
      listeners: [{ port, role: "submissions" }],
      stateDirectory: state,
      workers: 2,
      tls: { certificate: pki.leaf("mx").certificateFile, key: pki.leaf("other").keyFile }
    }
    Fs.writeFileSync(file, `export default ${JSON.stringify(config)}\n`)
    const result = await runPostern(["serve", "--config", file], 30_000)
    assert.strictEqual(result.code, 1, result.stderr)
    assert.include(result.stderr, "cannot start")
    assert.include(result.stderr, pki.leaf("mx").certificateFile)
    assert.notInclude(result.stderr, "restarting it")
  })
})
