/**
 * The live resolver for policy checks: Node's c-ares resolver, on the configured servers (the
 * system's when none are), with a timeout. Answers reach policy only through Dns.recording.
 */
import { Resolver } from "node:dns/promises"
import * as Dns from "./Dns.ts"

export const make = (options: { readonly servers: ReadonlyArray<string>; readonly timeout: number }): Dns.Resolve => {
  const resolver = new Resolver({ timeout: options.timeout, tries: 2 })
  if (options.servers.length > 0) resolver.setServers([...options.servers])
  return (name, type) => resolver.resolve(name, type)
}
