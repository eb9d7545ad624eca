import { assert, describe, it } from "@effect/vitest"
import * as Net from "node:net"
import * as Smtp from "../../bench/Smtp.ts"

const bindable = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = Net.createServer()
    server.once("error", () => resolve(false))
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(true)))
  })

describe("Smtp.freePorts", () => {
  it("gives distinct ports, free again once it returns (a server's two listeners never get the same one)", async () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const ports = await Smtp.freePorts("127.0.0.1", 3)
      assert.strictEqual(ports.length, 3)
      assert.strictEqual(new Set(ports).size, 3)
      for (const port of ports) assert.isTrue(await bindable(port), `port ${port} is free`)
    }
  })

  it("holds every port it picked until all are picked (released one by one, the kernel may give one out twice)", async () => {
    const steps: Array<string> = []
    const recordingListen = async (host: string) => {
      const server = await Smtp.listenOnAnyPort(host)
      steps.push("listen")
      server.once("close", () => steps.push("close"))
      return server
    }
    await Smtp.freePorts("127.0.0.1", 3, recordingListen)
    assert.deepStrictEqual(steps, ["listen", "listen", "listen", "close", "close", "close"])
  })

  it("closes what it opened when a pick fails", async () => {
    const opened: Array<Net.Server> = []
    let calls = 0
    const failingSecond = async (host: string) => {
      if (++calls === 2) throw new Error("no port")
      const server = await Smtp.listenOnAnyPort(host)
      opened.push(server)
      return server
    }
    let failed = false
    await Smtp.freePorts("127.0.0.1", 3, failingSecond).catch(() => (failed = true))
    assert.isTrue(failed)
    assert.strictEqual(opened.length, 1)
    assert.isFalse(opened[0]?.listening ?? true)
  })

  it("freePort gives one free port", async () => {
    assert.isTrue(await bindable(await Smtp.freePort("127.0.0.1")))
  })
})
