/** DNS answers from a table, for checks that take a resolver (Dns.Resolve) instead of asking a server. */
import * as Dns from "../../src/policy/Dns.ts"
import * as MessageAuth from "../../src/policy/MessageAuth.ts"

/** A resolver over a fixed table keyed "TYPE name"; names absent from it are ENOTFOUND. */
export const table = (answers: Readonly<Record<string, ReadonlyArray<unknown>>>): Dns.Resolve => async (name, type) => {
  const found = answers[`${type} ${name}`]
  if (found === undefined) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" })
  return found
}

/** mailauth's DKIM results for a message, with the one selector record it needs given by `selector` (its DNS name). */
export const dkimResults = async (message: Uint8Array, selector: string, record: string, sender: string) => {
  const verifier = MessageAuth.start({ sender, ip: "127.0.0.1", helo: "client.test", hostname: "check.test", resolve: table({ [`TXT ${selector}`]: [[record]] }) })
  verifier.write(message)
  return (await verifier.end()).dkim
}
