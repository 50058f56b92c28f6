// Lint is part of `npm test`: type-aware rules catch floating promises, the bug class an
// async rendezvous kernel is most exposed to.
import tseslint from 'typescript-eslint';

// DESIGN.md's layers, lowest first: a folder may import only from folders listed before it (node
// and client, both layer 7, never from each other; cli, the top, from any). The linter enforces it.
const LAYERS = [['ipc'], ['kernel'], ['runtime'], ['transport'], ['cluster'], ['sim', 'services'], ['vos'], ['node', 'client', 'admin'], ['cli']];
const FOLDERS = LAYERS.flat();
const layering = LAYERS.flatMap((layer, rank) =>
  layer.map((folder) => {
    const allowed = new Set([...LAYERS.slice(0, rank).flat(), folder]);
    const forbidden = FOLDERS.filter((f) => !allowed.has(f));
    return {
      files: [`src/${folder}/**/*.ts`],
      rules: {
        'no-restricted-imports': [
          'error',
          { patterns: forbidden.map((f) => ({ group: [`**/${f}/*`, `**/${f}/**`], message: `layer ${folder} may not import ${f} (DESIGN.md, "Layers")` })) },
        ],
      },
    };
  }),
);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tmp/**', 'eslint.config.js'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: {
        // Plain .mjs fixtures (child processes that import dist/) are linted with a default project.
        // More fixtures than the parser's default of 8 match: each is small, the cost is slight.
        projectService: { allowDefaultProject: ['test/*/fixtures/*.mjs', 'scripts/*.mjs'], maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 32 },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layering,
);
