/**
 * Source patches a user opts into with `llama-mgr install --patch NAME`: small, named changes to llama.cpp's
 * source for a toolchain that the release does not support, applied after checkout (with `git apply`) and
 * recorded in the instance so that updates apply them again. A patch that does not apply to a release is an
 * error, never a silent skip.
 *
 * @module
 */
import { join } from "node:path";
import { UserError } from "../util/errors.ts";
import { run } from "../util/run.ts";
import { checkoutCommit } from "./source.ts";

/**
 * A named source patch.
 *
 * @example
 * ```ts
 * const p: SourcePatch = PATCHES["vulkan-no-coopmat"];
 * console.log(`${p.name}: ${p.summary}`);
 * ```
 */
export interface SourcePatch {
  /** The name given to `--patch`. */
  name: string;
  /** One line: what it changes. */
  summary: string;
  /** What is lost with it, for the user to weigh. */
  cost: string;
  /** The unified diff, relative to the source root. */
  diff: string;
}

// Written against the llama.cpp release that node-llama-cpp 3.22.1 carries (de3ff81). The shader generator
// there compiles the Intel Xe flash-attention decode shaders with GL_KHR_cooperative_matrix whatever the
// shader compiler supports; this puts them, and the pipelines that use them, behind the same
// GGML_VULKAN_COOPMAT_GLSLC_SUPPORT check that guards every other cooperative-matrix shader.
const VULKAN_NO_COOPMAT =
  `diff --git a/ggml/src/ggml-vulkan/ggml-vulkan.cpp b/ggml/src/ggml-vulkan/ggml-vulkan.cpp
--- a/ggml/src/ggml-vulkan/ggml-vulkan.cpp
+++ b/ggml/src/ggml-vulkan/ggml-vulkan.cpp
@@ -2980,6 +2980,7 @@ void ggml_vk_load_shaders(vk_device& device, vk_pipeline requested) {
     ggml_vk_create_pipeline(device, device->pipeline_matmul_split_k_reduce, "split_k_reduce", split_k_reduce_len, split_k_reduce_data, "main", 2, 2 * sizeof(uint32_t), {256 * 4, 1, 1}, {}, 1);
     ggml_vk_create_pipeline(device, device->pipeline_flash_attn_split_k_reduce, "fa_split_k_reduce", fa_split_k_reduce_len, fa_split_k_reduce_data, "main", 3, sizeof(vk_op_flash_attn_split_k_reduce_push_constants), {1, device->subgroup_size, 1}, {device->subgroup_size}, 1, true);
 
+#if defined(GGML_VULKAN_COOPMAT_GLSLC_SUPPORT)
     if (device->vendor_id == VK_VENDOR_ID_INTEL && (device->architecture == INTEL_XE2 || (device->architecture == INTEL_XE1 && device->coopmat_support && device->uma))) {
         auto upper_power_of_2 = [&](uint32_t in) {
             GGML_ASSERT(in != 0);
@@ -3019,6 +3020,7 @@ void ggml_vk_load_shaders(vk_device& device, vk_pipeline requested) {
             ggml_vk_create_pipeline(device, pipelines.second, "xe_fa_decode_ph2", fa_decode_ph2_cm1_len, fa_decode_ph2_cm1_data, "main", 5, sizeof(vk_fa_xe_opt_push_constants), { 1, 1, 1 }, { group_sz_ph2, gqa_ratio, head_dim_pv, out_per_wg_ph2, xe_native_sub_group_size, split_p_per_iter_ph2, split_p_chunk, out_dim_per_wg }, 1, false, true, xe_native_sub_group_size);
         }
     }
+#endif
 
     for (auto &it : device->pipeline_fa_mask_opt) {
         auto BrBc = it.first;
@@ -7954,6 +7956,10 @@ void ggml_vk_flash_attn(ggml_backend_vk_context * ctx, vk_context& subctx, const
     bool xe_fa_supported_platform =
         (ctx->device.get()->architecture == INTEL_XE2 && ctx->device.get()->properties.deviceID != 0xFD80 && ctx->device.get()->properties.deviceID != 0xFD81) ||
         (ctx->device.get()->architecture == INTEL_XE1 && ctx->device.get()->coopmat_support && ctx->device.get()->uma);
+#if !defined(GGML_VULKAN_COOPMAT_GLSLC_SUPPORT)
+    // the Xe decode shaders need GL_KHR_cooperative_matrix in the shader compiler
+    xe_fa_supported_platform = false;
+#endif
     bool xe_fa_supported_usage = neq0 % 32 == 0 && nev0 % 16 == 0 && q->nb[1] > q->nb[2] && k->nb[1] > k->nb[2] && v->nb[1] > v->nb[2] && mask != nullptr;
     bool xe_fa_supported_dtype = q->type == GGML_TYPE_F32 && k->type == GGML_TYPE_F16 && v->type == GGML_TYPE_F16 && (mask != nullptr && mask->type == GGML_TYPE_F16);
     std::pair<vk_pipeline, vk_pipeline> xe_fa_pipeline_dual_phases = { nullptr , nullptr };
diff --git a/ggml/src/ggml-vulkan/vulkan-shaders/vulkan-shaders-gen.cpp b/ggml/src/ggml-vulkan/vulkan-shaders/vulkan-shaders-gen.cpp
--- a/ggml/src/ggml-vulkan/vulkan-shaders/vulkan-shaders-gen.cpp
+++ b/ggml/src/ggml-vulkan/vulkan-shaders/vulkan-shaders-gen.cpp
@@ -923,8 +923,10 @@ void process_shaders() {
 
     string_to_spv("fa_mask_opt", "flash_attn_mask_opt.comp", {});
 
+#if defined(GGML_VULKAN_COOPMAT_GLSLC_SUPPORT)
     string_to_spv("fa_decode_ph1", "flash_attn_decode_phase_1.comp", {}, true, true, false, false);
     string_to_spv("fa_decode_ph2", "flash_attn_decode_phase_2.comp", {}, true, true, false, false);
+#endif
 
     string_to_spv("fa_sparse_compact", "flash_attn_sparse_compact.comp", {});
     string_to_spv("fa_sparse_compact_subgroup", "flash_attn_sparse_compact.comp", {{"USE_SUBGROUPS", "1"}});
`;

// Same release: ggml_vk_instance_init passes validation-layer settings through VK_EXT_layer_settings, which
// Vulkan headers before 1.3.272 (Debian 12 has 1.3.239) do not define. Without it the instance is created
// as before that feature; only the validation layer's best-practice setting (a debugging aid) is lost.
const VULKAN_OLD_HEADERS =
  `diff --git a/ggml/src/ggml-vulkan/ggml-vulkan.cpp b/ggml/src/ggml-vulkan/ggml-vulkan.cpp
--- a/ggml/src/ggml-vulkan/ggml-vulkan.cpp
+++ b/ggml/src/ggml-vulkan/ggml-vulkan.cpp
@@ -5005,6 +5005,7 @@ void ggml_vk_instance_init() {
     if (debug_utils_ext) {
         extensions.push_back("VK_EXT_debug_utils");
     }
+#if defined(VK_EXT_layer_settings)
     VkBool32 enable_best_practice = layer_settings;
     std::vector<vk::LayerSettingEXT> settings = {
         {
@@ -5017,6 +5018,10 @@ void ggml_vk_instance_init() {
     };
     vk::LayerSettingsCreateInfoEXT layer_setting_info(settings);
     vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions, &layer_setting_info);
+#else
+    // headers without VK_EXT_layer_settings: the validation layer runs without its best-practice setting
+    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions);
+#endif
 #ifdef __APPLE__
     if (portability_enumeration_ext) {
         instance_create_info.flags |= vk::InstanceCreateFlagBits::eEnumeratePortabilityKHR;
`;

/**
 * The patches llama-mgr knows, by name.
 *
 * @example
 * ```ts
 * Object.keys(PATCHES); // ["vulkan-no-coopmat", "vulkan-old-headers"]
 * ```
 */
export const PATCHES: Record<string, SourcePatch> = {
  "vulkan-no-coopmat": {
    name: "vulkan-no-coopmat",
    summary: "compile the Vulkan backend with a shader compiler that lacks GL_KHR_cooperative_matrix " +
      "(e.g. Debian 12's glslc 2023.2): the Intel Xe flash-attention decode shaders are left out",
    cost: "Intel Xe GPUs use the generic flash-attention shaders instead of their decode fast path; " +
      "every other device is unaffected",
    diff: VULKAN_NO_COOPMAT,
  },
  "vulkan-old-headers": {
    name: "vulkan-old-headers",
    summary: "compile the Vulkan backend against Vulkan headers without VK_EXT_layer_settings " +
      "(older than 1.3.272, e.g. Debian 12's 1.3.239)",
    cost: "with GGML_VK_VALIDATE, the validation layer runs without its best-practice checks",
    diff: VULKAN_OLD_HEADERS,
  },
};

/**
 * The files a set of patches changes, relative to the source root.
 *
 * @example
 * ```ts
 * patchedFiles(["vulkan-old-headers"]); // ["ggml/src/ggml-vulkan/ggml-vulkan.cpp"]
 * ```
 */
export function patchedFiles(names: string[]): string[] {
  const files = new Set<string>();
  for (const n of validatePatches(names)) {
    for (const m of PATCHES[n].diff.matchAll(/^\+\+\+ b\/(.+)$/gm)) files.add(m[1]);
  }
  return [...files];
}

/**
 * The text and modification time of files, to give back the times of those a checkout and re-patch leave
 * as they were (see {@linkcode keepUnchangedTimes}).
 *
 * @example
 * ```ts ignore
 * const before = await snapshotFiles(src, patchedFiles(["vulkan-no-coopmat"]));
 * ```
 */
export async function snapshotFiles(
  srcDir: string,
  files: string[],
): Promise<Map<string, { text: string; mtime: Date }>> {
  const out = new Map<string, { text: string; mtime: Date }>();
  for (const f of files) {
    try {
      const path = join(srcDir, f);
      const [text, st] = await Promise.all([Deno.readTextFile(path), Deno.stat(path)]);
      if (st.mtime) out.set(f, { text, mtime: st.mtime });
    } catch { /* not there yet */ }
  }
  return out;
}

/**
 * Gives files whose text is what it was before a checkout and re-patch their old modification time, so
 * that ninja does not rebuild what depends on them (for Vulkan: the shader generator and every shader).
 *
 * @example
 * ```ts ignore
 * const before = await snapshotFiles(src, patchedFiles(patches));
 * await checkoutCommit(src, commit);
 * await applyPatches(src, patches);
 * await keepUnchangedTimes(src, before);
 * ```
 */
export async function keepUnchangedTimes(
  srcDir: string,
  before: Map<string, { text: string; mtime: Date }>,
): Promise<void> {
  for (const [f, old] of before) {
    const path = join(srcDir, f);
    const text = await Deno.readTextFile(path).catch(() => undefined);
    if (text === old.text) await Deno.utime(path, old.mtime, old.mtime);
  }
}

/**
 * Checks patch names against {@linkcode PATCHES}; returns them de-duplicated, in order.
 *
 * @example
 * ```ts
 * validatePatches(["vulkan-no-coopmat"]); // ["vulkan-no-coopmat"]
 * ```
 */
export function validatePatches(names: string[]): string[] {
  const out = [...new Set(names.map((n) => n.trim()).filter(Boolean))];
  for (const n of out) {
    if (!PATCHES[n]) {
      throw new UserError(`unknown --patch '${n}'`, {
        hint: `known patches: ${Object.values(PATCHES).map((p) => `${p.name} (${p.summary})`).join("; ")}`,
      });
    }
  }
  return out;
}

/**
 * Applies named patches to a clean checkout with `git apply`, checking each first so that a patch that does
 * not fit this release changes nothing and says so.
 *
 * @example
 * ```ts ignore
 * await applyPatches("/data/instances/vulkan/src", ["vulkan-no-coopmat"], { logFile: "/tmp/install.log" });
 * ```
 */
export async function applyPatches(
  srcDir: string,
  names: string[],
  options: { logFile?: string } = {},
): Promise<void> {
  for (const name of validatePatches(names)) {
    const patch = PATCHES[name];
    const check = await run(["git", "-C", srcDir, "apply", "--check", "-"], {
      stdin: patch.diff,
      logFile: options.logFile,
      check: false,
    });
    if (check.code !== 0) {
      throw new UserError(`--patch ${name} does not apply to this llama.cpp source`, {
        hint: `it was written for the release node-llama-cpp 3.22.1 carries; this source differs ` +
          `(${check.tail.slice(-3).join(" ").trim()}). Build a release that supports your toolchain ` +
          `without the patch, or update the toolchain`,
      });
    }
    await run(["git", "-C", srcDir, "apply", "-"], { stdin: patch.diff, logFile: options.logFile });
  }
}

/**
 * Puts the source at `commit` with exactly the named patches applied, whatever was checked out or patched
 * before (a rollback leaves the tree at a newer commit, patched for that release or not): a forced checkout,
 * then the patches. Files whose text comes out as it was keep their modification time, so ninja rebuilds only
 * what changed. Every build (install, update, a tool built on first use) prepares its source this way.
 *
 * @example
 * ```ts ignore
 * await checkoutPatched("/data/instances/vulkan/src", record.commit, record.patches ?? [], { logFile });
 * ```
 */
export async function checkoutPatched(
  srcDir: string,
  commit: string,
  patches: string[],
  options: { logFile?: string } = {},
): Promise<void> {
  const names = validatePatches(patches);
  const before = await snapshotFiles(srcDir, patchedFiles(Object.keys(PATCHES)));
  await checkoutCommit(srcDir, commit, { logFile: options.logFile });
  if (names.length) await applyPatches(srcDir, names, { logFile: options.logFile });
  await keepUnchangedTimes(srcDir, before);
}
