/** The OpenAPI document: every route the router knows is in it, with its method, parameters, auth and body schema. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ROUTES } from '../../src/server/routes.js';
import { client, testServer } from './helpers.js';

test('openapi: served without a token, 3.1, and covers every route of the router', async (t) => {
  const s = await testServer();
  t.after(() => s.stop());
  const r = await client(s.url, undefined)('GET', '/api/v1/openapi.json');
  assert.equal(r.status, 200);
  const doc = r.body;
  assert.equal(doc.openapi, '3.1.0');
  const ops = new Set<string>();
  for (const route of ROUTES) {
    const op = doc.paths[route.path]?.[route.method.toLowerCase()];
    assert.ok(op, `${route.method} ${route.path} is missing from the OpenAPI document`);
    assert.equal(op.operationId, route.op);
    assert.ok(!ops.has(route.op), `operation id ${route.op} is used twice`);
    ops.add(route.op);
    for (const m of route.path.matchAll(/\{(\w+)\}/g)) assert.ok(op.parameters.some((p: { name: string; in: string }) => p.name === m[1] && p.in === 'path'), `${route.path}: parameter ${m[1]}`);
    if (route.body) assert.ok(op.requestBody?.content['application/json'].schema, `${route.op}: body schema`);
    if (route.auth === 'public') assert.deepEqual(op.security, []);
    else assert.ok(op.responses['401'] && op.responses['403']);
  }
  // Nothing in the document that the router does not know.
  let documented = 0;
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    for (const m of Object.keys(methods)) {
      documented++;
      assert.ok(ROUTES.some((x) => x.path === path && x.method.toLowerCase() === m), `${m} ${path} is documented but not routed`);
    }
  }
  assert.equal(documented, ROUTES.length);
  // The agent endpoints of docs/API.md, with their shapes.
  for (const p of ['/api/v1/agent/register', '/api/v1/agent/policy', '/api/v1/agent/flows', '/api/v1/agent/events', '/api/v1/agent/heartbeat']) assert.ok(doc.paths[p], p);
  // A flow batch is records or the same fields as columns.
  const flows = doc.paths['/api/v1/agent/flows'].post.requestBody.content['application/json'].schema;
  const fields = ['bytes', 'dport', 'dst', 'end', 'initiator', 'packets', 'proto', 'rule', 'sport', 'src', 'start', 'verdict'];
  const form = (key: string) => flows.anyOf.find((f: { properties: Record<string, unknown> }) => key in f.properties).properties[key];
  assert.deepEqual(Object.keys(form('records').items.properties).sort(), fields);
  const columns = form('columns');
  assert.deepEqual(Object.keys(columns.properties).sort(), fields);
  assert.deepEqual([...columns.required].sort(), ['bytes', 'dport', 'dst', 'end', 'packets', 'proto', 'sport', 'src', 'start']);
  assert.equal(columns.properties.dport.type, 'array');
  assert.match(columns.description, /same length/);
  assert.ok(doc.paths['/api/v1/agent/policy'].get.responses['304']);
});
