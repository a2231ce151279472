/**
 * The policy templates of `bulkhead init`: fragments in the policy language
 * (docs/POLICY.md) for the common zones, each commented. They name labels
 * (`role`, `app`, `env`, `compliance`) that the estate's taxonomy must hold,
 * and services whose names are prefixed so that several templates can live in
 * one policy directory.
 */

/** One template: a name, a one-line summary and the files it writes. */
export interface Template {
  readonly name: string;
  readonly summary: string;
  /** File name (relative to the output directory) to YAML text. */
  readonly files: Readonly<Record<string, string>>;
}

const ENV_ISOLATION = `# Environment isolation boundary: production and non-production never talk.
#
# Deny rules win over every allow rule (docs/POLICY.md#semantics), so no
# later allow rule can open a path across the boundary by mistake; only an
# override (break-glass, with an owner and an expiry) can.
#
# Needs the label dimension \`env\` with the values used below.
rulesets:
  - name: env-isolation
    rules:
      # Nothing in prod opens connections to other environments...
      - id: env-isolation-prod-out
        action: deny
        from: ["env == 'prod'"]
        # \`!=\` also matches workloads without an \`env\` label (Calico semantics).
        to: ["env != 'prod'"]
        services: [any]
      # ...and nothing outside prod opens connections into it.
      - id: env-isolation-prod-in
        action: deny
        from: ["env != 'prod'"]
        to: ["env == 'prod'"]
        services: [any]
`;

const TIER_ISOLATION = `# Tier isolation: web -> app -> db, and nothing else.
#
# Replace \`shop\` with your app and the ports with its own. The ruleset scope
# confines every selector to the app's workloads, so another app's web tier
# is not matched. Everything not allowed here is denied by default; the deny
# rule makes the most dangerous skip (web straight to db) impossible even if
# a broader allow rule is added later.
#
# Needs the label dimensions \`role\` (web, app, db) and \`app\`.
services:
  - name: tier-web
    ports: [443/tcp]
  - name: tier-app
    ports: [8080/tcp]
  - name: tier-db
    ports: [5432/tcp]
iplists:
  - name: tier-internet
    include: [0.0.0.0/0, "::/0"]
    exclude: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "fc00::/7"]
    description: every address that is not ours
rulesets:
  - name: tier-isolation-shop
    scope: "app == 'shop'"
    rules:
      # Clients reach the web tier only.
      - id: tier-internet-web
        from: [{ iplist: tier-internet }]
        to: ["role == 'web'"]
        services: [tier-web]
      - id: tier-web-app
        from: ["role == 'web'"]
        to: ["role == 'app'"]
        services: [tier-app]
      - id: tier-app-db
        from: ["role == 'app'"]
        to: ["role == 'db'"]
        services: [tier-db]
      # The web tier never reaches the database directly.
      - id: tier-no-web-db
        action: deny
        from: ["role == 'web'"]
        to: ["role == 'db'"]
        services: [any]
`;

const PCI_RING_FENCE = `# PCI ring-fence: the cardholder data environment (CDE) is closed to
# every workload outside it.
#
# Workloads in scope carry \`compliance: pci\`. The deny rule blocks every
# connection from a workload that is not in the CDE into it, whatever allow
# rules say; inside the CDE, only the listed services are allowed. Admin access
# comes from the CDE's own jump hosts (see the jump-admin template); any other
# exception must be an override with an owner, a reason and an expiry.
#
# Needs the label dimensions \`compliance\` (pci) and \`role\`.
services:
  - name: pci-https
    ports: [443/tcp]
  - name: pci-db
    ports: [5432/tcp]
rulesets:
  - name: pci-ring-fence
    rules:
      # \`!=\` also matches workloads with no \`compliance\` label.
      - id: pci-fence-in
        action: deny
        from: ["compliance != 'pci'"]
        to: ["compliance == 'pci'"]
        services: [any]
      - id: pci-fence-out
        action: deny
        from: ["compliance == 'pci'"]
        to: ["compliance != 'pci'"]
        services: [any]
  - name: pci-cde
    scope: "compliance == 'pci'"
    rules:
      # Inside the CDE: web to app, app to database.
      - id: pci-web-app
        from: ["role == 'web'"]
        to: ["role == 'app'"]
        services: [pci-https]
      - id: pci-app-db
        from: ["role == 'app'"]
        to: ["role == 'db'"]
        services: [pci-db]
`;

const JUMP_ADMIN = `# Jump-host-only administration: SSH, RDP and WinRM reach workloads from the
# jump hosts only, and the jump hosts only from the admin VPN.
#
# The deny rule stops admin protocols from every other workload, whatever
# allow rules say. Replace the VPN prefix with your own.
#
# Needs the label dimension \`role\` (jump).
services:
  - name: admin-remote
    ports: [22/tcp, 3389/tcp, 5985-5986/tcp]
iplists:
  - name: admin-vpn
    include: [192.0.2.0/24]
    description: the administrators' VPN pool
rulesets:
  - name: jump-admin
    rules:
      # Administrators land on a jump host...
      - id: jump-admin-vpn-in
        from: [{ iplist: admin-vpn }]
        to: ["role == 'jump'"]
        services: [admin-remote]
      # ...and administer everything from there.
      - id: jump-admin-out
        from: ["role == 'jump'"]
        to: ["role != 'jump'"]
        services: [admin-remote]
      # No other workload opens an admin session to another.
      - id: jump-admin-only
        action: deny
        from: ["role != 'jump'"]
        to: ["all()"]
        services: [admin-remote]
`;

const SHARED_SERVICES = `# Shared services: DNS, NTP, LDAP, syslog and monitoring, which every
# workload needs. The client sides are \`global\` selectors, so these rules
# keep working when moved into a scoped ruleset.
#
# Needs the label dimension \`role\` (dns, ntp, ldap, syslog, monitor).
services:
  - name: shared-dns
    ports: [53/udp, 53/tcp]
  - name: shared-ntp
    ports: [123/udp]
  - name: shared-ldap
    ports: [389/tcp, 636/tcp]
  - name: shared-syslog
    ports: [514/udp, 6514/tcp]
  - name: shared-node-exporter
    ports: [9100/tcp]
rulesets:
  - name: shared-services
    rules:
      - id: shared-dns-clients
        from: [{ selector: "all()", global: true }]
        to: ["role == 'dns'"]
        services: [shared-dns]
      - id: shared-ntp-clients
        from: [{ selector: "all()", global: true }]
        to: ["role == 'ntp'"]
        services: [shared-ntp]
      - id: shared-ldap-clients
        from: [{ selector: "all()", global: true }]
        to: ["role == 'ldap'"]
        services: [shared-ldap]
      - id: shared-syslog-clients
        from: [{ selector: "all()", global: true }]
        to: ["role == 'syslog'"]
        services: [shared-syslog]
      # Monitoring pulls: the monitoring servers scrape every workload.
      - id: shared-monitor-scrape
        from: ["role == 'monitor'"]
        to: [{ selector: "all()", global: true }]
        services: [shared-node-exporter]
`;

/** Every template, by name, in the order `bulkhead init --list` prints them. */
export const TEMPLATES: readonly Template[] = [
  { name: 'env-isolation', summary: 'environment isolation boundary: prod and non-prod never talk', files: { 'env-isolation.yaml': ENV_ISOLATION } },
  { name: 'tier-isolation', summary: 'tier isolation within an app: web -> app -> db only', files: { 'tier-isolation.yaml': TIER_ISOLATION } },
  { name: 'pci-ring-fence', summary: 'PCI ring-fence: the cardholder data environment closed to everything outside it', files: { 'pci-ring-fence.yaml': PCI_RING_FENCE } },
  { name: 'jump-admin', summary: 'jump-host-only admin: SSH, RDP and WinRM from jump hosts only', files: { 'jump-admin.yaml': JUMP_ADMIN } },
  { name: 'shared-services', summary: 'shared services: DNS, NTP, LDAP, syslog and monitoring for every workload', files: { 'shared-services.yaml': SHARED_SERVICES } },
];

/** The template of that name, if any. */
export function findTemplate(name: string): Template | undefined {
  return TEMPLATES.find((t) => t.name === name);
}
