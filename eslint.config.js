// Lint: typescript-eslint's recommended rules plus the layering of the
// architecture (docs/ARCHITECTURE.md): a layer may import only the layers below
// it, and the pure core never touches the file system, processes or sockets.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeEffects = ['node:fs', 'node:fs/promises', 'node:child_process', 'node:net', 'node:dgram', 'node:http', 'node:https', 'fs', 'child_process'];

/**
 * The pure core, bottom up, with the layers each may import (besides itself).
 * Everything here is pure: no file system, processes or sockets.
 */
const core = {
  netset: [],
  model: ['netset'],
  policy: ['netset', 'model'],
  engine: ['netset', 'model', 'policy'],
  generate: ['netset', 'model', 'policy', 'flows'],
  compile: ['netset', 'model', 'policy', 'engine'],
  analysis: ['netset', 'model', 'policy', 'engine'],
  flows: ['netset', 'model', 'policy', 'engine'],
  k8s: ['netset', 'model', 'policy', 'engine', 'compile', 'analysis'],
  lint: ['netset', 'model', 'policy', 'engine'],
  recommend: ['netset', 'model', 'policy', 'engine', 'flows'],
  templates: [],
};
const layers = Object.keys(core);

function layerRule(layer) {
  const banned = layers.filter((l) => l !== layer && !core[layer].includes(l));
  const patterns = [
    ...banned.map((l) => ({ group: [`**/${l}/*`, `../${l}/*`, `../../${l}/*`], message: `the ${layer} layer may not import the ${l} layer (see docs/ARCHITECTURE.md)` })),
    { group: ['**/cli/*', '**/lab/*', '**/store/*', '**/server/*', '**/agent/*', '**/adapters/*'], message: 'the pure core may not import adapters, the store, the server, the agent, the lab or the CLI' },
  ];
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { paths: nodeEffects.map((name) => ({ name, message: 'the pure core does no I/O: move this to an adapter' })), patterns }],
    },
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'out/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  ...layers.map(layerRule),
  // The control plane and the host agent meet only over HTTP (docs/API.md): neither imports the other, nor the CLI.
  {
    files: ['src/server/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/agent/*', '**/cli/*', '**/lab/*'], message: 'the server talks to agents over HTTP only, and never imports the CLI or the lab' }] }] },
  },
  {
    files: ['src/agent/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/server/*', '**/cli/*', '**/lab/*'], message: 'the agent talks to the server over HTTP only, and never imports the CLI or the lab' }] }] },
  },
);
