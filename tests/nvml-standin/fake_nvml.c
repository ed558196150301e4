/*
 * fake_nvml.c: a stand-in libnvidia-ml.so for tests on machines without an NVIDIA GPU.
 *
 * It exports only the NVML entry points the daemon's sampler reaches through nvml-wrapper 0.13 (plus
 * nvmlShutdown, which nvml-wrapper calls on drop, and nvmlErrorString). Everything else is absent, which
 * nvml-wrapper reports as FailedToLoadSymbol when called.
 *
 * Values are re-read from a text file on every call, so a test can rewrite the file while the sampler runs
 * (write a temporary file and rename it over the old one, so no call sees half a file). The file is
 * `fake_nvml.txt` in the directory this library was loaded from (found with dladdr), so every copy of the
 * library in its own directory has its own values; if that file does not exist, the path in the
 * environment variable FAKE_NVML_FILE is used instead. Its contents are cached until the file changes (stat).
 *
 * Format: one `key value` per line (value = rest of the line, trimmed; the last line with a key wins, so a test
 * can append overrides); blank lines and `#` comments ignored.
 *   init_error CODE              nvmlInit_v2 / nvmlInitWithFlags fail with CODE
 *   driver_version 550.54.15     nvmlSystemGetDriverVersion
 *   device_count N               nvmlDeviceGetCount_v2 (absent: 0)
 *   gpuN.name TEXT               nvmlDeviceGetName
 *   gpuN.uuid TEXT               nvmlDeviceGetUUID
 *   gpuN.memory_total BYTES      nvmlDeviceGetMemoryInfo(_v2); both keys needed; free = total - used
 *   gpuN.memory_used BYTES         (reserved is 0 in _v2)
 *   gpuN.util_gpu PERCENT        nvmlDeviceGetUtilizationRates; both keys needed
 *   gpuN.util_memory PERCENT
 *   gpuN.power_mw MILLIWATTS     nvmlDeviceGetPowerUsage
 *   gpuN.power_limit_mw MW       nvmlDeviceGetEnforcedPowerLimit
 *   gpuN.energy_mj MILLIJOULES   nvmlDeviceGetTotalEnergyConsumption
 *   gpuN.temperature CELSIUS     nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)
 *   gpuN.clock_graphics MHZ      nvmlDeviceGetClockInfo(NVML_CLOCK_GRAPHICS); likewise clock_sm,
 *                                  clock_mem, clock_video
 *   gpuN.throttle BITS           nvmlDeviceGetCurrentClocksThrottleReasons / ...EventReasons (0x.. allowed)
 *   gpuN.processes PID:BYTES,... nvmlDeviceGetComputeRunningProcesses_v3; empty value: no processes;
 *                                  PID alone or PID:na: used memory not available
 *   gpuN.error.CALL CODE         that call on device N fails with CODE. CALL is one of: handle, name, uuid,
 *                                  memory, util, power, power_limit, energy, temperature, clock_graphics,
 *                                  clock_sm, clock_mem, clock_video, throttle, processes; or `all` (every
 *                                  call on the device, getting its handle included)
 * Numbers are decimal or 0x-hex. CODE is an NVML return code, by number or by its name without the
 * NVML_ERROR_ prefix: NOT_SUPPORTED (3), NO_PERMISSION (4), DRIVER_NOT_LOADED (9), GPU_IS_LOST (15),
 * LIB_RM_VERSION_MISMATCH (18), UNKNOWN (999), ...
 * A device call whose key is missing fails with NOT_SUPPORTED. A missing or unreadable file makes
 * nvmlInit fail with UNKNOWN (and a note on stderr), and counts as 0 devices after init.
 *
 * Built with -fvisibility=hidden; exported symbols are marked EXPORT.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

/* Layouts as in nvml.h (and nvml-wrapper-sys's bindings). */
typedef struct fake_device *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

#define NVML_MEMORY_V2_VERSION ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))
#define NVML_VALUE_NOT_AVAILABLE (~0ULL)
#define MAX_DEVICES 64

/* Handles are addresses in this array; the index is the offset. */
struct fake_device {
    char unused;
};
static struct fake_device devices[MAX_DEVICES];
static int init_count; /* nvmlInit/nvmlShutdown reference count */

static int initialized(void) { return __atomic_load_n(&init_count, __ATOMIC_SEQ_CST) > 0; }

static const struct {
    const char *name;
    int code;
} codes[] = {
    {"SUCCESS", 0},
    {"UNINITIALIZED", 1},
    {"INVALID_ARGUMENT", 2},
    {"NOT_SUPPORTED", 3},
    {"NO_PERMISSION", 4},
    {"ALREADY_INITIALIZED", 5},
    {"NOT_FOUND", 6},
    {"INSUFFICIENT_SIZE", 7},
    {"INSUFFICIENT_POWER", 8},
    {"DRIVER_NOT_LOADED", 9},
    {"TIMEOUT", 10},
    {"IRQ_ISSUE", 11},
    {"LIBRARY_NOT_FOUND", 12},
    {"FUNCTION_NOT_FOUND", 13},
    {"CORRUPTED_INFOROM", 14},
    {"GPU_IS_LOST", 15},
    {"RESET_REQUIRED", 16},
    {"OPERATING_SYSTEM", 17},
    {"LIB_RM_VERSION_MISMATCH", 18},
    {"IN_USE", 19},
    {"MEMORY", 20},
    {"NO_DATA", 21},
    {"ARGUMENT_VERSION_MISMATCH", 25},
    {"UNKNOWN", 999},
};

/* The values file: next to this library, else $FAKE_NVML_FILE. Empty string when there is none. */
static void values_path(char *out, size_t len, struct stat *st) {
    Dl_info info;
    out[0] = '\0';
    if (dladdr((void *)values_path, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash)
            snprintf(out, len, "%.*s/fake_nvml.txt", (int)(slash - info.dli_fname), info.dli_fname);
        else
            snprintf(out, len, "fake_nvml.txt");
        if (stat(out, st) == 0)
            return;
    }
    const char *env = getenv("FAKE_NVML_FILE");
    snprintf(out, len, "%s", env ? env : "");
    if (!out[0] || stat(out, st) != 0)
        out[0] = '\0';
}

/* The file's contents, read again only when it changed (tests replace it by rename: a new inode). A real
 * driver answers from memory; re-reading the file on every call made the stand-in dominate overhead
 * benchmarks. */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static char *cache;
static struct stat cached;

/* Finds `key` (its last line) and copies its value into `out`. Returns 1 if found, 0 if not (or no file). */
static int lookup(const char *key, char *out, size_t len) {
    char path[PATH_MAX];
    struct stat st;
    values_path(path, sizeof path, &st);
    if (!path[0])
        return 0;
    pthread_mutex_lock(&cache_lock);
    if (!cache || st.st_ino != cached.st_ino || st.st_dev != cached.st_dev || st.st_size != cached.st_size ||
        st.st_mtim.tv_sec != cached.st_mtim.tv_sec || st.st_mtim.tv_nsec != cached.st_mtim.tv_nsec) {
        FILE *f = fopen(path, "r");
        char *text = f ? calloc((size_t)st.st_size + 1, 1) : NULL;
        size_t got = text ? fread(text, 1, (size_t)st.st_size, f) : 0;
        if (f)
            fclose(f);
        if (!text) {
            pthread_mutex_unlock(&cache_lock);
            return 0;
        }
        text[got] = '\0';
        free(cache);
        cache = text;
        cached = st;
    }
    int found = 0;
    size_t key_len = strlen(key);
    for (const char *line = cache; line && *line;) { /* to the end: the last line with the key wins */
        const char *end = strchr(line, '\n');
        const char *next = end ? end + 1 : line + strlen(line);
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, key, key_len) == 0) {
            const char *rest = p + key_len;
            if (rest == next || *rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r') {
                while (rest < next && (*rest == ' ' || *rest == '\t'))
                    rest++;
                size_t n = (size_t)(next - rest);
                while (n > 0 && (rest[n - 1] == '\n' || rest[n - 1] == '\r' || rest[n - 1] == ' ' || rest[n - 1] == '\t'))
                    n--;
                snprintf(out, len, "%.*s", (int)n, rest);
                found = 1;
            }
        }
        line = next;
    }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

static int parse_u64(const char *text, unsigned long long *out) {
    char *end;
    errno = 0;
    *out = strtoull(text, &end, 0);
    return errno == 0 && end != text && *end == '\0';
}

static nvmlReturn_t parse_code(const char *text) {
    unsigned long long n;
    if (parse_u64(text, &n))
        return (nvmlReturn_t)n;
    if (strncasecmp(text, "NVML_ERROR_", 11) == 0)
        text += 11;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcasecmp(text, codes[i].name) == 0)
            return codes[i].code;
    return NVML_ERROR_UNKNOWN;
}

/* The scripted error for `call` on device `index`, `error.all` first; NVML_SUCCESS if none. */
static nvmlReturn_t scripted_error(unsigned int index, const char *call) {
    char key[64], value[64];
    snprintf(key, sizeof key, "gpu%u.error.all", index);
    if (lookup(key, value, sizeof value))
        return parse_code(value);
    snprintf(key, sizeof key, "gpu%u.error.%s", index, call);
    if (lookup(key, value, sizeof value))
        return parse_code(value);
    return NVML_SUCCESS;
}

/* Validates the handle and applies scripted errors; on success stores the device index. */
static nvmlReturn_t device_call(nvmlDevice_t device, const char *call, unsigned int *index) {
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (device < devices || device >= devices + MAX_DEVICES)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned int)(device - devices);
    return scripted_error(*index, call);
}

/* Reads `gpuN.field` into `out`; NOT_SUPPORTED when missing, UNKNOWN when not a number. */
static nvmlReturn_t device_u64(unsigned int index, const char *field, unsigned long long *out) {
    char key[64], value[128];
    snprintf(key, sizeof key, "gpu%u.%s", index, field);
    if (!lookup(key, value, sizeof value))
        return NVML_ERROR_NOT_SUPPORTED;
    return parse_u64(value, out) ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

/* One number-valued call: `call` names the scripted error, `field` the value key. */
static nvmlReturn_t device_number(nvmlDevice_t device, const char *call, const char *field, unsigned long long *out) {
    unsigned int index;
    nvmlReturn_t ret = device_call(device, call, &index);
    return ret != NVML_SUCCESS ? ret : device_u64(index, field, out);
}

static nvmlReturn_t device_string(nvmlDevice_t device, const char *field, char *out, unsigned int len) {
    unsigned int index;
    char key[64], value[256];
    nvmlReturn_t ret = device_call(device, field, &index);
    if (ret != NVML_SUCCESS)
        return ret;
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(key, sizeof key, "gpu%u.%s", index, field);
    if (!lookup(key, value, sizeof value))
        return NVML_ERROR_NOT_SUPPORTED;
    if (strlen(value) + 1 > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

static nvmlReturn_t init(void) {
    char value[64];
    char path[PATH_MAX];
    struct stat st;
    values_path(path, sizeof path, &st);
    if (!path[0]) {
        const char *env = getenv("FAKE_NVML_FILE");
        fprintf(stderr, "fake_nvml: no values file (next to the library, or $FAKE_NVML_FILE='%s')\n", env ? env : "");
        return NVML_ERROR_UNKNOWN;
    }
    if (lookup("init_error", value, sizeof value))
        return parse_code(value);
    __atomic_add_fetch(&init_count, 1, __ATOMIC_SEQ_CST);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) { return init(); }

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return init();
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    __atomic_sub_fetch(&init_count, 1, __ATOMIC_SEQ_CST);
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == result)
            return codes[i].name;
    return "Unknown Error";
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    char value[128];
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!version)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!lookup("driver_version", value, sizeof value))
        return NVML_ERROR_NOT_SUPPORTED;
    if (strlen(value) + 1 > length)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(version, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    char value[64];
    unsigned long long n = 0;
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (lookup("device_count", value, sizeof value) && !parse_u64(value, &n))
        return NVML_ERROR_UNKNOWN;
    *count = n > MAX_DEVICES ? MAX_DEVICES : (unsigned int)n;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    unsigned int count;
    nvmlReturn_t ret = nvmlDeviceGetCount_v2(&count);
    if (ret != NVML_SUCCESS)
        return ret;
    if (!device || index >= count)
        return NVML_ERROR_INVALID_ARGUMENT;
    ret = scripted_error(index, "handle");
    if (ret != NVML_SUCCESS)
        return ret;
    *device = &devices[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    return device_string(device, "name", name, length);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    return device_string(device, "uuid", uuid, length);
}

static nvmlReturn_t memory(nvmlDevice_t device, unsigned long long *total, unsigned long long *used) {
    unsigned int index;
    nvmlReturn_t ret = device_call(device, "memory", &index);
    if (ret == NVML_SUCCESS)
        ret = device_u64(index, "memory_total", total);
    if (ret == NVML_SUCCESS)
        ret = device_u64(index, "memory_used", used);
    return ret;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *out) {
    unsigned long long total, used;
    nvmlReturn_t ret = out ? memory(device, &total, &used) : NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS) {
        out->total = total;
        out->used = used;
        out->free = total > used ? total - used : 0;
    }
    return ret;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *out) {
    unsigned long long total, used;
    if (!out)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (out->version != NVML_MEMORY_V2_VERSION)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    nvmlReturn_t ret = memory(device, &total, &used);
    if (ret == NVML_SUCCESS) {
        out->total = total;
        out->reserved = 0;
        out->used = used;
        out->free = total > used ? total - used : 0;
    }
    return ret;
}

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *out) {
    unsigned int index;
    unsigned long long gpu, mem;
    nvmlReturn_t ret = out ? device_call(device, "util", &index) : NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS)
        ret = device_u64(index, "util_gpu", &gpu);
    if (ret == NVML_SUCCESS)
        ret = device_u64(index, "util_memory", &mem);
    if (ret == NVML_SUCCESS) {
        out->gpu = (unsigned int)gpu;
        out->memory = (unsigned int)mem;
    }
    return ret;
}

/* The calls returning one unsigned int. */
static nvmlReturn_t device_uint(nvmlDevice_t device, const char *call, const char *field, unsigned int *out) {
    unsigned long long n;
    nvmlReturn_t ret = out ? device_number(device, call, field, &n) : NVML_ERROR_INVALID_ARGUMENT;
    if (ret == NVML_SUCCESS)
        *out = (unsigned int)n;
    return ret;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    return device_uint(device, "power", "power_mw", power);
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    return device_uint(device, "power_limit", "power_limit_mw", limit);
}

EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    return energy ? device_number(device, "energy", "energy_mj", energy) : NVML_ERROR_INVALID_ARGUMENT;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    if (sensor != 0) /* NVML_TEMPERATURE_GPU is the only sensor */
        return NVML_ERROR_INVALID_ARGUMENT;
    return device_uint(device, "temperature", "temperature", temp);
}

EXPORT nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int *clock) {
    static const char *const names[] = {"clock_graphics", "clock_sm", "clock_mem", "clock_video"};
    if (type < 0 || type > 3)
        return NVML_ERROR_INVALID_ARGUMENT;
    return device_uint(device, names[type], names[type], clock);
}

EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *reasons) {
    return reasons ? device_number(device, "throttle", "throttle", reasons) : NVML_ERROR_INVALID_ARGUMENT;
}

/* The newer name for the same call (NVML 12.2+). */
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *reasons) {
    return nvmlDeviceGetCurrentClocksThrottleReasons(device, reasons);
}

/* NVML's two-step protocol: with too small a buffer (or none), store the count needed and return
 * INSUFFICIENT_SIZE; with no processes, SUCCESS and a count of 0. */
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                           nvmlProcessInfo_t *infos) {
    unsigned int index, n = 0;
    char key[64], value[16384];
    nvmlReturn_t ret = count ? device_call(device, "processes", &index) : NVML_ERROR_INVALID_ARGUMENT;
    if (ret != NVML_SUCCESS)
        return ret;
    snprintf(key, sizeof key, "gpu%u.processes", index);
    if (!lookup(key, value, sizeof value))
        return NVML_ERROR_NOT_SUPPORTED;
    nvmlProcessInfo_t parsed[256];
    for (char *save = NULL, *item = strtok_r(value, ", ", &save); item && n < 256;
         item = strtok_r(NULL, ", ", &save)) {
        if (strcasecmp(item, "none") == 0)
            continue;
        char *colon = strchr(item, ':');
        unsigned long long pid, used = NVML_VALUE_NOT_AVAILABLE;
        if (colon)
            *colon = '\0';
        if (!parse_u64(item, &pid))
            return NVML_ERROR_UNKNOWN;
        if (colon && strcasecmp(colon + 1, "na") != 0 && !parse_u64(colon + 1, &used))
            return NVML_ERROR_UNKNOWN;
        parsed[n].pid = (unsigned int)pid;
        parsed[n].usedGpuMemory = used;
        parsed[n].gpuInstanceId = 0xFFFFFFFFu;
        parsed[n].computeInstanceId = 0xFFFFFFFFu;
        n++;
    }
    if (!infos || *count < n) {
        *count = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(infos, parsed, n * sizeof parsed[0]);
    *count = n;
    return NVML_SUCCESS;
}
