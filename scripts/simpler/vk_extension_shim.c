/* A Vulkan layer that lets SAPIEN 2.2.2 (SimplerEnv's ManiSkill2_real2sim) create its device on Mesa's lavapipe:
   SAPIEN asks for VK_KHR_swapchain, VK_KHR_external_semaphore_fd, VK_KHR_shader_clock and
   VK_KHR_ray_tracing_pipeline, which lavapipe (Mesa 25) does not offer, and stops with ErrorExtensionNotPresent.
   This layer reports them and removes them again from vkCreateDevice's list. Offscreen rasterized rendering never
   calls into them (no window, no CUDA interop); the ray-tracing shader ("rt", SimplerEnv's prepackaged drawer
   configs) cannot work and crashes: use the default shader. One instance per process is assumed (SAPIEN's case).
   Built and enabled by scripts/setup_simpler.sh; written for this project, not copied. */
#include <string.h>
#include <stdlib.h>
#include <vulkan/vulkan.h>
#include <vulkan/vk_layer.h>

static const char *FAKED[] = {"VK_KHR_swapchain", "VK_KHR_external_semaphore_fd", "VK_KHR_shader_clock",
                              "VK_KHR_ray_tracing_pipeline"};
#define N_FAKED (sizeof(FAKED) / sizeof(FAKED[0]))
static PFN_vkGetInstanceProcAddr next_gipa;
static PFN_vkGetDeviceProcAddr next_gdpa;
static VkInstance the_instance;
static PFN_vkEnumerateDeviceExtensionProperties next_enum;
static PFN_vkCreateDevice next_create_device;

static int faked(const char *name) {
  for (unsigned i = 0; i < N_FAKED; i++) if (!strcmp(name, FAKED[i])) return 1;
  return 0;
}

static VKAPI_ATTR VkResult VKAPI_CALL shim_CreateInstance(const VkInstanceCreateInfo *info,
    const VkAllocationCallbacks *alloc, VkInstance *instance) {
  VkLayerInstanceCreateInfo *chain = (VkLayerInstanceCreateInfo *)info->pNext;
  while (chain && !(chain->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && chain->function == VK_LAYER_LINK_INFO))
    chain = (VkLayerInstanceCreateInfo *)chain->pNext;
  if (!chain) return VK_ERROR_INITIALIZATION_FAILED;
  next_gipa = chain->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  chain->u.pLayerInfo = chain->u.pLayerInfo->pNext;
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)next_gipa(VK_NULL_HANDLE, "vkCreateInstance");
  VkResult r = create(info, alloc, instance);
  if (r == VK_SUCCESS) {
    the_instance = *instance;
    next_enum = (PFN_vkEnumerateDeviceExtensionProperties)next_gipa(*instance, "vkEnumerateDeviceExtensionProperties");
    next_create_device = (PFN_vkCreateDevice)next_gipa(*instance, "vkCreateDevice");
  }
  return r;
}

static VKAPI_ATTR VkResult VKAPI_CALL shim_EnumerateDeviceExtensionProperties(VkPhysicalDevice gpu,
    const char *layer, uint32_t *count, VkExtensionProperties *props) {
  PFN_vkEnumerateDeviceExtensionProperties next = next_enum;
  if (layer && !strcmp(layer, "VK_LAYER_VLA_RAZOR_extension_shim")) { *count = 0; return VK_SUCCESS; }
  uint32_t n = 0;
  VkResult r = next(gpu, layer, &n, NULL);
  if (r != VK_SUCCESS) return r;
  VkExtensionProperties *real = calloc(n + N_FAKED, sizeof(VkExtensionProperties));
  next(gpu, layer, &n, real);
  uint32_t total = n;
  for (unsigned i = 0; i < N_FAKED && !layer; i++) {
    int present = 0;
    for (uint32_t j = 0; j < n; j++) if (!strcmp(real[j].extensionName, FAKED[i])) present = 1;
    if (!present) { strncpy(real[total].extensionName, FAKED[i], VK_MAX_EXTENSION_NAME_SIZE - 1); real[total].specVersion = 1; total++; }
  }
  if (!props) { *count = total; free(real); return VK_SUCCESS; }
  uint32_t k = *count < total ? *count : total;
  memcpy(props, real, k * sizeof(VkExtensionProperties));
  *count = k;
  free(real);
  return k < total ? VK_INCOMPLETE : VK_SUCCESS;
}

static VKAPI_ATTR VkResult VKAPI_CALL shim_CreateDevice(VkPhysicalDevice gpu, const VkDeviceCreateInfo *info,
    const VkAllocationCallbacks *alloc, VkDevice *device) {
  VkLayerDeviceCreateInfo *chain = (VkLayerDeviceCreateInfo *)info->pNext;
  while (chain && !(chain->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && chain->function == VK_LAYER_LINK_INFO))
    chain = (VkLayerDeviceCreateInfo *)chain->pNext;
  if (!chain) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = chain->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  next_gdpa = chain->u.pLayerInfo->pfnNextGetDeviceProcAddr;
  chain->u.pLayerInfo = chain->u.pLayerInfo->pNext;
  const char **kept = calloc(info->enabledExtensionCount + 1, sizeof(char *));
  uint32_t n = 0;
  for (uint32_t i = 0; i < info->enabledExtensionCount; i++)
    if (!faked(info->ppEnabledExtensionNames[i])) kept[n++] = info->ppEnabledExtensionNames[i];
  VkDeviceCreateInfo copy = *info;
  copy.enabledExtensionCount = n;
  copy.ppEnabledExtensionNames = kept;
  PFN_vkCreateDevice create = next_create_device ? next_create_device
                                                : (PFN_vkCreateDevice)gipa(the_instance, "vkCreateDevice");
  VkResult r = create(gpu, &copy, alloc, device);
  free(kept);
  return r;
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL shim_GetDeviceProcAddr(VkDevice device, const char *name) {
  return next_gdpa(device, name);
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL shim_GetInstanceProcAddr(VkInstance instance, const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)shim_GetInstanceProcAddr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)shim_CreateInstance;
  if (!strcmp(name, "vkEnumerateDeviceExtensionProperties")) return (PFN_vkVoidFunction)shim_EnumerateDeviceExtensionProperties;
  if (!strcmp(name, "vkCreateDevice")) return (PFN_vkVoidFunction)shim_CreateDevice;
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)shim_GetDeviceProcAddr;
  return next_gipa(instance, name);
}

VKAPI_ATTR VkResult VKAPI_CALL vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *v) {
  if (v->loaderLayerInterfaceVersion > 2) v->loaderLayerInterfaceVersion = 2;
  v->pfnGetInstanceProcAddr = shim_GetInstanceProcAddr;
  v->pfnGetDeviceProcAddr = shim_GetDeviceProcAddr;
  v->pfnGetPhysicalDeviceProcAddr = NULL;
  return VK_SUCCESS;
}
