//! The daemon's GPU sampler against the stand-in NVML library (`nvml-standin/fake_nvml.c`): scripted values
//! come back in SI units, changes show on the next sample, unsupported values are absent (not 0), a lost GPU
//! is reported while the others are sampled and recovers after its backoff, and NVML that cannot be loaded
//! says why. Backoffs are stepped past with `sample_at`, so nothing sleeps.
use llmops_e2e::nvml::FakeNvml;
use llmopsd::telemetry::gpu::{Backoff, GpuSampler};
use llmopsd::telemetry::model::{GpuProcess, GpuReport, GpuSample};
use std::time::{Duration, Instant};

/// Every value for device `i`, derived from `i` so devices are told apart.
fn gpu_lines(i: u32, power_mw: u64, energy_mj: u64) -> String {
    format!(
        "gpu{i}.name NVIDIA H100 80GB HBM3\ngpu{i}.uuid GPU-{i:08}-0000-0000-0000-000000000000\n\
         gpu{i}.memory_total 85899345920\ngpu{i}.memory_used {used}\ngpu{i}.util_gpu {util}\ngpu{i}.util_memory 40\n\
         gpu{i}.power_mw {power_mw}\ngpu{i}.power_limit_mw 700000\ngpu{i}.energy_mj {energy_mj}\n\
         gpu{i}.temperature {temperature}\ngpu{i}.clock_sm 1980\ngpu{i}.clock_mem 2619\ngpu{i}.throttle 0x44\n\
         gpu{i}.processes {pid}:1073741824,5678:na\n",
        used = 1_000_000_000 * u64::from(i + 1),
        util = 10 + i,
        temperature = 50 + i,
        pid = 1000 + i,
    )
}

fn gpus(count: u32, power_mw: u64, energy_mj: u64) -> String {
    let devices: String = (0..count).map(|i| gpu_lines(i, power_mw, energy_mj)).collect();
    format!("driver_version 550.54.15\ndevice_count {count}\n{devices}")
}

fn sampler(nvml: &FakeNvml) -> GpuSampler {
    GpuSampler::new(Some(nvml.lib_path().to_path_buf()))
}

fn expected(i: u32, power_watts: f64, energy_joules: f64) -> GpuSample {
    GpuSample {
        index: i,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: format!("GPU-{i:08}-0000-0000-0000-000000000000"),
        memory_total_bytes: Some(85_899_345_920),
        memory_used_bytes: Some(1_000_000_000 * u64::from(i + 1)),
        utilization_gpu_percent: Some(10 + i),
        utilization_memory_percent: Some(40),
        power_watts: Some(power_watts),
        power_limit_watts: Some(700.0),
        energy_joules_total: Some(energy_joules),
        temperature_celsius: Some(50 + i),
        sm_clock_mhz: Some(1980),
        memory_clock_mhz: Some(2619),
        throttle_reasons: Some(vec!["sw_power_cap".into(), "hw_thermal_slowdown".into()]),
        processes: Some(vec![
            GpuProcess { pid: 1000 + i, used_memory_bytes: Some(1_073_741_824), engine: None },
            GpuProcess { pid: 5678, used_memory_bytes: None, engine: None },
        ]),
        error: None,
    }
}

fn unavailable(report: &GpuReport) -> String {
    report.unavailable.clone().unwrap_or_else(|| panic!("expected NVML to be unavailable: {report:?}"))
}

#[test]
fn scripted_values_come_back_in_si_units() {
    let nvml = FakeNvml::new(&gpus(1, 350_000, 123_456_789));
    let report = sampler(&nvml).sample();
    assert_eq!(report.unavailable, None);
    assert_eq!(report.driver_version.as_deref(), Some("550.54.15"));
    assert_eq!(report.devices, [expected(0, 350.0, 123_456.789)]);
}

#[test]
fn changed_values_are_seen_on_the_next_sample() {
    let nvml = FakeNvml::new(&gpus(1, 350_000, 1_000_000));
    let mut sampler = sampler(&nvml);
    assert_eq!(sampler.sample().devices[0].power_watts, Some(350.0));
    nvml.set(&gpus(1, 420_500, 1_900_000));
    let device = &sampler.sample().devices[0];
    assert_eq!((device.power_watts, device.energy_joules_total), (Some(420.5), Some(1900.0)));
    nvml.set(&format!("{}gpu0.throttle 0\ngpu0.processes\n", gpus(1, 420_500, 1_900_000)));
    let device = &sampler.sample().devices[0];
    assert_eq!(device.throttle_reasons, Some(vec![]), "no active reason is empty, not absent");
    assert_eq!(device.processes, Some(vec![]), "no processes is empty, not absent");
}

#[test]
fn values_the_device_does_not_support_are_absent_not_zero() {
    let values = format!(
        "{}gpu0.error.power NOT_SUPPORTED\ngpu0.error.temperature FUNCTION_NOT_FOUND\ngpu0.error.processes NO_PERMISSION\n\
         gpu0.error.throttle NOT_SUPPORTED\n",
        gpus(1, 350_000, 5000)
    );
    let nvml = FakeNvml::new(&values.replace("gpu0.energy_mj 5000\n", "").replace("gpu0.util_memory 40\n", ""));
    let device = sampler(&nvml).sample().devices.remove(0);
    assert_eq!(device.error, None);
    let missing = [device.power_watts, device.energy_joules_total];
    assert_eq!(missing, [None, None], "power unsupported, energy key missing");
    assert_eq!((device.utilization_gpu_percent, device.utilization_memory_percent), (None, None), "one call");
    assert_eq!((device.temperature_celsius, device.throttle_reasons, device.processes), (None, None, None));
    assert_eq!((device.power_limit_watts, device.memory_used_bytes), (Some(700.0), Some(1_000_000_000)));
}

#[test]
fn a_lost_gpu_is_reported_while_the_other_is_sampled_and_recovers_after_backoff() {
    let nvml = FakeNvml::new(&gpus(2, 300_000, 1000));
    let mut sampler = sampler(&nvml);
    let t0 = Instant::now();
    assert_eq!(sampler.sample_at(t0).devices, [expected(0, 300.0, 1.0), expected(1, 300.0, 1.0)]);

    nvml.set(&format!("{}gpu1.error.all GPU_IS_LOST\n", gpus(2, 310_000, 2000)));
    let report = sampler.sample_at(t0);
    assert_eq!(report.devices[0], expected(0, 310.0, 2.0), "the other GPU goes on being sampled");
    let lost = &report.devices[1];
    let error = lost.error.as_deref().expect("the lost GPU has an error");
    assert!(error.contains("GpuLost"), "{error}");
    let known = GpuSample {
        index: 1,
        name: lost.name.clone(),
        uuid: lost.uuid.clone(),
        error: lost.error.clone(),
        ..Default::default()
    };
    assert_eq!(lost, &known, "no values, only what identifies it");
    assert_eq!(
        (lost.name.as_str(), lost.uuid.as_str()),
        ("NVIDIA H100 80GB HBM3", "GPU-00000001-0000-0000-0000-000000000000")
    );

    // Fixed, but its 1 s backoff has not run out: not asked yet.
    nvml.set(&gpus(2, 320_000, 3000));
    let report = sampler.sample_at(t0 + Duration::from_millis(999));
    assert_eq!(report.devices[0].power_watts, Some(320.0));
    assert!(report.devices[1].error.is_some(), "still waiting out the backoff");
    assert_eq!(sampler.sample_at(t0 + Duration::from_secs(1)).devices[1], expected(1, 320.0, 3.0), "recovered");
}

#[test]
fn a_gpu_failing_again_waits_twice_as_long_and_its_handle_can_fail_too() {
    let nvml = FakeNvml::new(&gpus(2, 300_000, 1000));
    let mut sampler = sampler(&nvml)
        .with_backoff(Backoff::INIT, Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) });
    let t0 = Instant::now();
    sampler.sample_at(t0);
    // Lost so that even its handle cannot be had: the name and UUID seen before are kept.
    nvml.set(&format!("{}gpu0.error.handle UNKNOWN\n", gpus(2, 300_000, 1000)));
    let failed = sampler.sample_at(t0).devices.remove(0);
    assert!(failed.error.as_deref().is_some_and(|e| e.contains("Unknown")), "{failed:?}");
    assert_eq!(failed.uuid, "GPU-00000000-0000-0000-0000-000000000000");
    // Retried after 100 ms, fails again; the next try is 200 ms later.
    assert!(sampler.sample_at(t0 + Duration::from_millis(100)).devices[0].error.is_some());
    nvml.set(&gpus(2, 300_000, 1000));
    assert!(sampler.sample_at(t0 + Duration::from_millis(299)).devices[0].error.is_some(), "waiting 200 ms");
    assert_eq!(sampler.sample_at(t0 + Duration::from_millis(300)).devices[0], expected(0, 300.0, 1.0));
}

#[test]
fn a_library_that_does_not_exist_is_reported_as_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-libnvidia-ml.so.1");
    let report = GpuSampler::new(Some(missing.clone())).sample();
    let reason = unavailable(&report);
    assert!(reason.contains("library not found") && reason.contains(&missing.display().to_string()), "{reason}");
    assert_eq!((report.devices.len(), report.driver_version), (0, None));
}

#[test]
fn a_driver_that_is_not_loaded_is_reported_and_nvml_is_loaded_once_it_is() {
    let nvml = FakeNvml::new(&format!("init_error DRIVER_NOT_LOADED\n{}", gpus(1, 350_000, 1000)));
    let mut sampler = sampler(&nvml);
    let t0 = Instant::now();
    let reason = unavailable(&sampler.sample_at(t0));
    assert!(reason.contains("driver not loaded"), "{reason}");
    assert!(reason.contains(&nvml.lib_path().display().to_string()), "names the library tried: {reason}");

    nvml.set(&gpus(1, 350_000, 1000));
    assert_eq!(unavailable(&sampler.sample_at(t0 + Duration::from_secs(4))), reason, "init backoff is 5 s");
    assert_eq!(sampler.sample_at(t0 + Duration::from_secs(5)).devices, [expected(0, 350.0, 1.0)]);
}

#[test]
fn eight_gpus_are_sampled_each_with_its_own_values() {
    let nvml = FakeNvml::new(&gpus(8, 700_000, 42_000));
    let report = sampler(&nvml).sample();
    let wanted: Vec<GpuSample> = (0..8).map(|i| expected(i, 700.0, 42.0)).collect();
    assert_eq!(report.devices, wanted);
}

#[test]
fn devices_that_go_away_leave_the_report_and_copies_of_the_library_keep_their_own_values() {
    let two = FakeNvml::new(&gpus(2, 300_000, 1000));
    let one = FakeNvml::new(&gpus(1, 100_000, 1000));
    let (mut two_sampler, mut one_sampler) = (sampler(&two), sampler(&one));
    assert_eq!(two_sampler.sample().devices.len(), 2);
    assert_eq!(one_sampler.sample().devices, [expected(0, 100.0, 1.0)], "separate copies, separate values");
    two.set(&gpus(1, 300_000, 1000));
    assert_eq!(two_sampler.sample().devices, [expected(0, 300.0, 1.0)]);
}
