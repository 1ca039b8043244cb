/** CPU and memory of a process tree, as the server itself measures them (server/process-tree.ts). */
export { sampleProcessTree as sampleTree, type TreeSample } from '../../server/process-tree.ts';
