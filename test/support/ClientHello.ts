/**
 * Real TLS ClientHellos for tests: what `node:tls` sends first to a port it believes speaks
 * TLS, captured by a listener of the test's own that never answers.
 */
import * as Net from "node:net"
import * as Tls from "node:tls"
import * as ClientHelloParser from "../../src/tls/ClientHello.ts"

/** The first TLS record a client sends with `options` (its whole ClientHello, as one record). */
export const capture = (options: Tls.ConnectionOptions = {}): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer((socket) => {
      let bytes = Buffer.alloc(0)
      socket.on("data", (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk])
        const needed = ClientHelloParser.recordLength(bytes)
        if (needed === undefined || bytes.length < needed) return
        resolve(bytes)
        socket.destroy()
        server.close()
      })
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      if (typeof address !== "object" || address === null) return reject(new Error("no port"))
      const client = Tls.connect({ port: address.port, host: "127.0.0.1", rejectUnauthorized: false, ...options })
      client.on("error", () => undefined)
    })
  })
