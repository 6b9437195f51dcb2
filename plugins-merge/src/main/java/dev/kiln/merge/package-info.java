/**
 * Kiln's merge methods: one {@link dev.kiln.merge.MergeTechniques} provider contributing linear, task-arithmetic,
 * ties, dare, breadcrumbs, slerp, model-stock, fisher and pcb, each a per-tensor NDArray computation on the inputs'
 * device.
 */
package dev.kiln.merge;
