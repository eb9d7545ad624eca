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

  it("freePort gives one free port", async () => {
    assert.isTrue(await bindable(await Smtp.freePort("127.0.0.1")))
  })
})
