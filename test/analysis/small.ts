/**
 * A small shop whose connectivity is easy to work out by hand, for tests with
 * known answers, and edits of it for known policy pairs (diff, compare).
 *
 *   internet --443--> lb-1 --443--> web-1, web-2, web-dev --8080--> app-1, app-dev --5432--> db-1 (pci)
 *   vpn --22--> jump-1 --22--> everything
 *   dev never reaches prod (deny); web-dev and app-dev are in test mode.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SMALL = `
taxonomy:
  role: [lb, web, app, db, jump]
  app: open
  env: [prod, dev]
  compliance: [pci]
iplists:
  - name: internet
    include: [0.0.0.0/0]
    exclude: [10.0.0.0/8]
  - name: vpn
    include: [10.200.0.0/16]
services:
  - name: https
    ports: [443/tcp]
workloads:
  - { name: lb-1, addresses: [10.0.0.5], labels: { role: lb, app: edge, env: prod } }
  - { name: web-1, addresses: [10.0.1.1], labels: { role: web, app: shop, env: prod } }
  - { name: web-2, addresses: [10.0.1.2], labels: { role: web, app: shop, env: prod } }
  - { name: app-1, addresses: [10.0.2.1], labels: { role: app, app: shop, env: prod } }
  - { name: db-1, addresses: [10.0.3.1], labels: { role: db, app: shop, env: prod, compliance: pci } }
  - { name: jump-1, addresses: [10.0.9.1], labels: { role: jump, app: infra, env: prod } }
  - { name: web-dev, addresses: [10.1.1.1], labels: { role: web, app: shop, env: dev }, mode: test }
  - { name: app-dev, addresses: [10.1.2.1], labels: { role: app, app: shop, env: dev }, mode: test }
rulesets:
  - name: shop
    scope: "app == 'shop'"
    rules:
      - { id: lb-web, from: [{ selector: "role == 'lb'", global: true }], to: ["role == 'web'"], services: [https] }
      - { id: web-app, from: ["role == 'web'"], to: ["role == 'app'"], services: ["8080/tcp"] }
      - { id: app-db, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5432/tcp"] }
  - name: edge
    rules:
      - { id: internet-lb, from: [{ iplist: internet }], to: ["role == 'lb'"], services: [https] }
  - name: admin
    rules:
      - { id: vpn-jump, from: [{ iplist: vpn }], to: ["role == 'jump'"], services: ["22/tcp"] }
      - { id: jump-ssh, from: ["role == 'jump'"], to: ["all()"], services: ["22/tcp"] }
      - { id: no-dev-prod, action: deny, from: ["env == 'dev'"], to: ["env == 'prod'"], services: [any] }
`;

/**
 * The small shop, edited: `app-db` removed, `web-app` also on 8443, a new
 * `lb-app` rule, and a deny that keeps the jump host out of dev.
 */
export const SMALL_NEXT = SMALL.replace(`      - { id: app-db, from: ["role == 'app'"], to: ["role == 'db'"], services: ["5432/tcp"] }\n`, '')
  .replace(`services: ["8080/tcp"] }`, `services: ["8080/tcp", "8443/tcp"] }\n      - { id: lb-app, from: [{ selector: "role == 'lb'", global: true }], to: ["role == 'app'"], services: ["8443/tcp"] }`)
  .replace(`      - { id: no-dev-prod,`, `      - { id: no-jump-dev, action: deny, from: ["role == 'jump'"], to: ["env == 'dev'"], services: ["22/tcp"] }\n      - { id: no-dev-prod,`);

/** Writes a policy text as a directory with one file; returns the directory. */
export function policyDir(text: string, name = 'policy'): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'bulkhead-analysis-')), name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'policy.yaml'), text);
  return dir;
}
