//! `proto/csi.proto` against CSI spec v1.12.0.
//!
//! The expectation tables below are transcribed from the protobuf blocks of
//! the spec's `spec.md`, independently of `csi.proto`; they are checked
//! against the descriptor set that `build.rs` compiled with protox and fed
//! to code generation. Field numbers and types are the wire contract with
//! the CO's sidecars, so any drift fails here.

use std::collections::BTreeSet;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    Value,
};
use rds_csi::csi::FILE_DESCRIPTOR_SET;

const PACKAGE: &str = "csi.v1";

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
}

fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(&format!("{PACKAGE}.{name}"))
        .unwrap_or_else(|| panic!("message {name} missing from csi.proto"))
}

fn enumeration(pool: &DescriptorPool, name: &str) -> EnumDescriptor {
    pool.get_enum_by_name(&format!("{PACKAGE}.{name}"))
        .unwrap_or_else(|| panic!("enum {name} missing from csi.proto"))
}

fn extension(pool: &DescriptorPool, name: &str) -> ExtensionDescriptor {
    pool.get_extension_by_name(&format!("{PACKAGE}.{name}"))
        .unwrap_or_else(|| panic!("extension {name} missing from csi.proto"))
}

/// A type as spec.md spells it: `string`, `repeated Topology`,
/// `map<string, string>`, `.google.protobuf.Timestamp`.
fn spec_type(field: &FieldDescriptor) -> String {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("map fields have an entry message")
        };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        return format!(
            "map<{}, {}>",
            kind_name(&key.kind()),
            kind_name(&value.kind())
        );
    }
    let name = kind_name(&field.kind());
    if field.is_list() {
        format!("repeated {name}")
    } else {
        name
    }
}

fn kind_name(kind: &Kind) -> String {
    let qualified = |full: &str| match full.strip_prefix("csi.v1.") {
        Some(local) => local.to_owned(),
        None => format!(".{full}"),
    };
    match kind {
        Kind::Message(m) => qualified(m.full_name()),
        Kind::Enum(e) => qualified(e.full_name()),
        Kind::String => "string".into(),
        Kind::Bool => "bool".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        other => format!("{other:?}"),
    }
}

type FieldTable = &'static [(&'static str, u32, &'static str)];

/// (message, [(field, number, type)]), every field of each message.
const MESSAGES: &[(&str, FieldTable)] = &[
    (
        "CreateVolumeRequest",
        &[
            ("name", 1, "string"),
            ("capacity_range", 2, "CapacityRange"),
            ("volume_capabilities", 3, "repeated VolumeCapability"),
            ("parameters", 4, "map<string, string>"),
            ("secrets", 5, "map<string, string>"),
            ("volume_content_source", 6, "VolumeContentSource"),
            ("accessibility_requirements", 7, "TopologyRequirement"),
            ("mutable_parameters", 8, "map<string, string>"),
        ],
    ),
    ("CreateVolumeResponse", &[("volume", 1, "Volume")]),
    (
        "Volume",
        &[
            ("capacity_bytes", 1, "int64"),
            ("volume_id", 2, "string"),
            ("volume_context", 3, "map<string, string>"),
            ("content_source", 4, "VolumeContentSource"),
            ("accessible_topology", 5, "repeated Topology"),
        ],
    ),
    (
        "VolumeContentSource",
        &[
            ("snapshot", 1, "VolumeContentSource.SnapshotSource"),
            ("volume", 2, "VolumeContentSource.VolumeSource"),
        ],
    ),
    (
        "VolumeContentSource.SnapshotSource",
        &[("snapshot_id", 1, "string")],
    ),
    (
        "VolumeContentSource.VolumeSource",
        &[("volume_id", 1, "string")],
    ),
    (
        "VolumeCapability",
        &[
            ("block", 1, "VolumeCapability.BlockVolume"),
            ("mount", 2, "VolumeCapability.MountVolume"),
            ("access_mode", 3, "VolumeCapability.AccessMode"),
        ],
    ),
    ("VolumeCapability.BlockVolume", &[]),
    (
        "VolumeCapability.MountVolume",
        &[
            ("fs_type", 1, "string"),
            ("mount_flags", 2, "repeated string"),
            ("volume_mount_group", 3, "string"),
        ],
    ),
    (
        "VolumeCapability.AccessMode",
        &[("mode", 1, "VolumeCapability.AccessMode.Mode")],
    ),
    (
        "CapacityRange",
        &[("required_bytes", 1, "int64"), ("limit_bytes", 2, "int64")],
    ),
    (
        "TopologyRequirement",
        &[
            ("requisite", 1, "repeated Topology"),
            ("preferred", 2, "repeated Topology"),
        ],
    ),
    ("Topology", &[("segments", 1, "map<string, string>")]),
    (
        "DeleteVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("secrets", 2, "map<string, string>"),
        ],
    ),
    (
        "ControllerPublishVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("node_id", 2, "string"),
            ("volume_capability", 3, "VolumeCapability"),
            ("readonly", 4, "bool"),
            ("secrets", 5, "map<string, string>"),
            ("volume_context", 6, "map<string, string>"),
        ],
    ),
    (
        "ControllerPublishVolumeResponse",
        &[("publish_context", 1, "map<string, string>")],
    ),
    (
        "ControllerUnpublishVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("node_id", 2, "string"),
            ("secrets", 3, "map<string, string>"),
        ],
    ),
    (
        "ValidateVolumeCapabilitiesRequest",
        &[
            ("volume_id", 1, "string"),
            ("volume_context", 2, "map<string, string>"),
            ("volume_capabilities", 3, "repeated VolumeCapability"),
            ("parameters", 4, "map<string, string>"),
            ("secrets", 5, "map<string, string>"),
            ("mutable_parameters", 6, "map<string, string>"),
        ],
    ),
    (
        "ValidateVolumeCapabilitiesResponse",
        &[
            (
                "confirmed",
                1,
                "ValidateVolumeCapabilitiesResponse.Confirmed",
            ),
            ("message", 2, "string"),
        ],
    ),
    (
        "ListVolumesRequest",
        &[("max_entries", 1, "int32"), ("starting_token", 2, "string")],
    ),
    (
        "ListVolumesResponse",
        &[
            ("entries", 1, "repeated ListVolumesResponse.Entry"),
            ("next_token", 2, "string"),
        ],
    ),
    (
        "ListVolumesResponse.Entry",
        &[
            ("volume", 1, "Volume"),
            ("status", 2, "ListVolumesResponse.VolumeStatus"),
        ],
    ),
    (
        "ListVolumesResponse.VolumeStatus",
        &[
            ("published_node_ids", 1, "repeated string"),
            ("volume_condition", 2, "VolumeCondition"),
        ],
    ),
    (
        "GetCapacityResponse",
        &[
            ("available_capacity", 1, "int64"),
            ("maximum_volume_size", 2, ".google.protobuf.Int64Value"),
            ("minimum_volume_size", 3, ".google.protobuf.Int64Value"),
        ],
    ),
    (
        "ControllerServiceCapability",
        &[("rpc", 1, "ControllerServiceCapability.RPC")],
    ),
    (
        "ControllerServiceCapability.RPC",
        &[("type", 1, "ControllerServiceCapability.RPC.Type")],
    ),
    (
        "CreateSnapshotRequest",
        &[
            ("source_volume_id", 1, "string"),
            ("name", 2, "string"),
            ("secrets", 3, "map<string, string>"),
            ("parameters", 4, "map<string, string>"),
        ],
    ),
    ("CreateSnapshotResponse", &[("snapshot", 1, "Snapshot")]),
    (
        "Snapshot",
        &[
            ("size_bytes", 1, "int64"),
            ("snapshot_id", 2, "string"),
            ("source_volume_id", 3, "string"),
            ("creation_time", 4, ".google.protobuf.Timestamp"),
            ("ready_to_use", 5, "bool"),
            ("group_snapshot_id", 6, "string"),
        ],
    ),
    (
        "ListSnapshotsRequest",
        &[
            ("max_entries", 1, "int32"),
            ("starting_token", 2, "string"),
            ("source_volume_id", 3, "string"),
            ("snapshot_id", 4, "string"),
            ("secrets", 5, "map<string, string>"),
        ],
    ),
    (
        "ControllerExpandVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("capacity_range", 2, "CapacityRange"),
            ("secrets", 3, "map<string, string>"),
            ("volume_capability", 4, "VolumeCapability"),
        ],
    ),
    (
        "ControllerExpandVolumeResponse",
        &[
            ("capacity_bytes", 1, "int64"),
            ("node_expansion_required", 2, "bool"),
        ],
    ),
    (
        "NodeStageVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("publish_context", 2, "map<string, string>"),
            ("staging_target_path", 3, "string"),
            ("volume_capability", 4, "VolumeCapability"),
            ("secrets", 5, "map<string, string>"),
            ("volume_context", 6, "map<string, string>"),
        ],
    ),
    (
        "NodeUnstageVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("staging_target_path", 2, "string"),
        ],
    ),
    (
        "NodePublishVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("publish_context", 2, "map<string, string>"),
            ("staging_target_path", 3, "string"),
            ("target_path", 4, "string"),
            ("volume_capability", 5, "VolumeCapability"),
            ("readonly", 6, "bool"),
            ("secrets", 7, "map<string, string>"),
            ("volume_context", 8, "map<string, string>"),
        ],
    ),
    (
        "NodeUnpublishVolumeRequest",
        &[("volume_id", 1, "string"), ("target_path", 2, "string")],
    ),
    (
        "NodeGetVolumeStatsResponse",
        &[
            ("usage", 1, "repeated VolumeUsage"),
            ("volume_condition", 2, "VolumeCondition"),
        ],
    ),
    (
        "VolumeUsage",
        &[
            ("available", 1, "int64"),
            ("total", 2, "int64"),
            ("used", 3, "int64"),
            ("unit", 4, "VolumeUsage.Unit"),
        ],
    ),
    (
        "VolumeCondition",
        &[("abnormal", 1, "bool"), ("message", 2, "string")],
    ),
    (
        "NodeServiceCapability.RPC",
        &[("type", 1, "NodeServiceCapability.RPC.Type")],
    ),
    (
        "NodeGetInfoResponse",
        &[
            ("node_id", 1, "string"),
            ("max_volumes_per_node", 2, "int64"),
            ("accessible_topology", 3, "Topology"),
        ],
    ),
    (
        "NodeExpandVolumeRequest",
        &[
            ("volume_id", 1, "string"),
            ("volume_path", 2, "string"),
            ("capacity_range", 3, "CapacityRange"),
            ("staging_target_path", 4, "string"),
            ("volume_capability", 5, "VolumeCapability"),
            ("secrets", 6, "map<string, string>"),
        ],
    ),
    (
        "GetPluginInfoResponse",
        &[
            ("name", 1, "string"),
            ("vendor_version", 2, "string"),
            ("manifest", 3, "map<string, string>"),
        ],
    ),
    (
        "GetPluginCapabilitiesResponse",
        &[("capabilities", 1, "repeated PluginCapability")],
    ),
    (
        "PluginCapability",
        &[
            ("service", 1, "PluginCapability.Service"),
            ("volume_expansion", 2, "PluginCapability.VolumeExpansion"),
        ],
    ),
    (
        "PluginCapability.Service",
        &[("type", 1, "PluginCapability.Service.Type")],
    ),
    (
        "PluginCapability.VolumeExpansion",
        &[("type", 1, "PluginCapability.VolumeExpansion.Type")],
    ),
    (
        "ProbeResponse",
        &[("ready", 1, ".google.protobuf.BoolValue")],
    ),
];

#[test]
fn fields_match_the_spec() {
    let pool = pool();
    let mut mismatches = Vec::new();
    for (name, expected) in MESSAGES {
        let expected: BTreeSet<(String, u32, String)> = expected
            .iter()
            .map(|(field, number, ty)| ((*field).to_owned(), *number, (*ty).to_owned()))
            .collect();
        let actual: BTreeSet<(String, u32, String)> = message(&pool, name)
            .fields()
            .map(|f| (f.name().to_owned(), f.number(), spec_type(&f)))
            .collect();
        if actual != expected {
            mismatches.push(format!(
                "{name}:\n  missing {:?}\n  unexpected {:?}",
                expected.difference(&actual).collect::<Vec<_>>(),
                actual.difference(&expected).collect::<Vec<_>>(),
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// (oneof owner, oneof name, member fields).
const ONEOFS: &[(&str, &str, &[&str])] = &[
    ("VolumeCapability", "access_type", &["block", "mount"]),
    ("VolumeContentSource", "type", &["snapshot", "volume"]),
    ("PluginCapability", "type", &["service", "volume_expansion"]),
    ("ControllerServiceCapability", "type", &["rpc"]),
    ("NodeServiceCapability", "type", &["rpc"]),
    ("GroupControllerServiceCapability", "type", &["rpc"]),
];

#[test]
fn oneofs_match_the_spec() {
    let pool = pool();
    for (owner, oneof, members) in ONEOFS {
        let oneofs: Vec<_> = message(&pool, owner).oneofs().collect();
        assert_eq!(oneofs.len(), 1, "{owner} should declare exactly one oneof");
        assert_eq!(oneofs[0].name(), *oneof, "{owner}'s oneof name");
        let actual: Vec<_> = oneofs[0].fields().map(|f| f.name().to_owned()).collect();
        assert_eq!(actual, *members, "members of {owner}.{oneof}");
    }
    let access_mode = message(&pool, "VolumeCapability")
        .get_field_by_name("access_mode")
        .expect("access_mode field");
    assert!(
        access_mode.containing_oneof().is_none(),
        "VolumeCapability.access_mode sits outside the access_type oneof"
    );
}

/// (enum, [(value, number)]), every enum of the spec.
const ENUMS: &[(&str, &[(&str, i32)])] = &[
    (
        "VolumeCapability.AccessMode.Mode",
        &[
            ("UNKNOWN", 0),
            ("SINGLE_NODE_WRITER", 1),
            ("SINGLE_NODE_READER_ONLY", 2),
            ("MULTI_NODE_READER_ONLY", 3),
            ("MULTI_NODE_SINGLE_WRITER", 4),
            ("MULTI_NODE_MULTI_WRITER", 5),
            ("SINGLE_NODE_SINGLE_WRITER", 6),
            ("SINGLE_NODE_MULTI_WRITER", 7),
        ],
    ),
    (
        "ControllerServiceCapability.RPC.Type",
        &[
            ("UNKNOWN", 0),
            ("CREATE_DELETE_VOLUME", 1),
            ("PUBLISH_UNPUBLISH_VOLUME", 2),
            ("LIST_VOLUMES", 3),
            ("GET_CAPACITY", 4),
            ("CREATE_DELETE_SNAPSHOT", 5),
            ("LIST_SNAPSHOTS", 6),
            ("CLONE_VOLUME", 7),
            ("PUBLISH_READONLY", 8),
            ("EXPAND_VOLUME", 9),
            ("LIST_VOLUMES_PUBLISHED_NODES", 10),
            ("VOLUME_CONDITION", 11),
            ("GET_VOLUME", 12),
            ("SINGLE_NODE_MULTI_WRITER", 13),
            ("MODIFY_VOLUME", 14),
            ("GET_SNAPSHOT", 15),
        ],
    ),
    (
        "NodeServiceCapability.RPC.Type",
        &[
            ("UNKNOWN", 0),
            ("STAGE_UNSTAGE_VOLUME", 1),
            ("GET_VOLUME_STATS", 2),
            ("EXPAND_VOLUME", 3),
            ("VOLUME_CONDITION", 4),
            ("SINGLE_NODE_MULTI_WRITER", 5),
            ("VOLUME_MOUNT_GROUP", 6),
        ],
    ),
    (
        "PluginCapability.Service.Type",
        &[
            ("UNKNOWN", 0),
            ("CONTROLLER_SERVICE", 1),
            ("VOLUME_ACCESSIBILITY_CONSTRAINTS", 2),
            ("GROUP_CONTROLLER_SERVICE", 3),
            ("SNAPSHOT_METADATA_SERVICE", 4),
        ],
    ),
    (
        "PluginCapability.VolumeExpansion.Type",
        &[("UNKNOWN", 0), ("ONLINE", 1), ("OFFLINE", 2)],
    ),
    (
        "VolumeUsage.Unit",
        &[("UNKNOWN", 0), ("BYTES", 1), ("INODES", 2)],
    ),
    (
        "GroupControllerServiceCapability.RPC.Type",
        &[
            ("UNKNOWN", 0),
            ("CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT", 1),
        ],
    ),
    (
        "BlockMetadataType",
        &[("UNKNOWN", 0), ("FIXED_LENGTH", 1), ("VARIABLE_LENGTH", 2)],
    ),
];

#[test]
fn enums_match_the_spec() {
    let pool = pool();
    for (name, expected) in ENUMS {
        let actual: Vec<(String, i32)> = enumeration(&pool, name)
            .values()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect();
        let expected: Vec<(String, i32)> = expected
            .iter()
            .map(|(v, n)| ((*v).to_owned(), *n))
            .collect();
        assert_eq!(actual, expected, "values of {name}");
    }
    let declared: BTreeSet<String> = pool
        .all_enums()
        .filter(|e| e.package_name() == PACKAGE)
        .map(|e| e.full_name().trim_start_matches("csi.v1.").to_owned())
        .collect();
    let listed: BTreeSet<String> = ENUMS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        declared, listed,
        "csi.proto declares exactly the spec's enums"
    );
}

/// Every message name of the spec, nested ones included.
const ALL_MESSAGES: &[&str] = &[
    "GetPluginInfoRequest",
    "GetPluginInfoResponse",
    "GetPluginCapabilitiesRequest",
    "GetPluginCapabilitiesResponse",
    "PluginCapability",
    "PluginCapability.Service",
    "PluginCapability.VolumeExpansion",
    "ProbeRequest",
    "ProbeResponse",
    "CreateVolumeRequest",
    "VolumeContentSource",
    "VolumeContentSource.SnapshotSource",
    "VolumeContentSource.VolumeSource",
    "CreateVolumeResponse",
    "VolumeCapability",
    "VolumeCapability.BlockVolume",
    "VolumeCapability.MountVolume",
    "VolumeCapability.AccessMode",
    "CapacityRange",
    "Volume",
    "TopologyRequirement",
    "Topology",
    "DeleteVolumeRequest",
    "DeleteVolumeResponse",
    "ControllerPublishVolumeRequest",
    "ControllerPublishVolumeResponse",
    "ControllerUnpublishVolumeRequest",
    "ControllerUnpublishVolumeResponse",
    "ValidateVolumeCapabilitiesRequest",
    "ValidateVolumeCapabilitiesResponse",
    "ValidateVolumeCapabilitiesResponse.Confirmed",
    "ListVolumesRequest",
    "ListVolumesResponse",
    "ListVolumesResponse.VolumeStatus",
    "ListVolumesResponse.Entry",
    "ControllerGetVolumeRequest",
    "ControllerGetVolumeResponse",
    "ControllerGetVolumeResponse.VolumeStatus",
    "ControllerModifyVolumeRequest",
    "ControllerModifyVolumeResponse",
    "GetCapacityRequest",
    "GetCapacityResponse",
    "ControllerGetCapabilitiesRequest",
    "ControllerGetCapabilitiesResponse",
    "ControllerServiceCapability",
    "ControllerServiceCapability.RPC",
    "CreateSnapshotRequest",
    "CreateSnapshotResponse",
    "Snapshot",
    "DeleteSnapshotRequest",
    "DeleteSnapshotResponse",
    "ListSnapshotsRequest",
    "ListSnapshotsResponse",
    "ListSnapshotsResponse.Entry",
    "GetSnapshotRequest",
    "GetSnapshotResponse",
    "ControllerExpandVolumeRequest",
    "ControllerExpandVolumeResponse",
    "NodeStageVolumeRequest",
    "NodeStageVolumeResponse",
    "NodeUnstageVolumeRequest",
    "NodeUnstageVolumeResponse",
    "NodePublishVolumeRequest",
    "NodePublishVolumeResponse",
    "NodeUnpublishVolumeRequest",
    "NodeUnpublishVolumeResponse",
    "NodeGetVolumeStatsRequest",
    "NodeGetVolumeStatsResponse",
    "VolumeUsage",
    "VolumeCondition",
    "NodeGetCapabilitiesRequest",
    "NodeGetCapabilitiesResponse",
    "NodeServiceCapability",
    "NodeServiceCapability.RPC",
    "NodeGetInfoRequest",
    "NodeGetInfoResponse",
    "NodeExpandVolumeRequest",
    "NodeExpandVolumeResponse",
    "GroupControllerGetCapabilitiesRequest",
    "GroupControllerGetCapabilitiesResponse",
    "GroupControllerServiceCapability",
    "GroupControllerServiceCapability.RPC",
    "CreateVolumeGroupSnapshotRequest",
    "CreateVolumeGroupSnapshotResponse",
    "VolumeGroupSnapshot",
    "DeleteVolumeGroupSnapshotRequest",
    "DeleteVolumeGroupSnapshotResponse",
    "GetVolumeGroupSnapshotRequest",
    "GetVolumeGroupSnapshotResponse",
    "BlockMetadata",
    "GetMetadataAllocatedRequest",
    "GetMetadataAllocatedResponse",
    "GetMetadataDeltaRequest",
    "GetMetadataDeltaResponse",
];

#[test]
fn message_set_matches_the_spec() {
    let declared: BTreeSet<String> = pool()
        .all_messages()
        .filter(|m| m.package_name() == PACKAGE && !m.is_map_entry())
        .map(|m| m.full_name().trim_start_matches("csi.v1.").to_owned())
        .collect();
    let listed: BTreeSet<String> = ALL_MESSAGES.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(declared, listed);
}

/// (service, [rpc]) in spec order; every rpc takes `<rpc>Request` and
/// returns `<rpc>Response`.
const SERVICES: &[(&str, &[&str])] = &[
    (
        "Identity",
        &["GetPluginInfo", "GetPluginCapabilities", "Probe"],
    ),
    (
        "Controller",
        &[
            "CreateVolume",
            "DeleteVolume",
            "ControllerPublishVolume",
            "ControllerUnpublishVolume",
            "ValidateVolumeCapabilities",
            "ListVolumes",
            "GetCapacity",
            "ControllerGetCapabilities",
            "CreateSnapshot",
            "DeleteSnapshot",
            "ListSnapshots",
            "GetSnapshot",
            "ControllerExpandVolume",
            "ControllerGetVolume",
            "ControllerModifyVolume",
        ],
    ),
    (
        "GroupController",
        &[
            "GroupControllerGetCapabilities",
            "CreateVolumeGroupSnapshot",
            "DeleteVolumeGroupSnapshot",
            "GetVolumeGroupSnapshot",
        ],
    ),
    (
        "SnapshotMetadata",
        &["GetMetadataAllocated", "GetMetadataDelta"],
    ),
    (
        "Node",
        &[
            "NodeStageVolume",
            "NodeUnstageVolume",
            "NodePublishVolume",
            "NodeUnpublishVolume",
            "NodeGetVolumeStats",
            "NodeExpandVolume",
            "NodeGetCapabilities",
            "NodeGetInfo",
        ],
    ),
];

#[test]
fn services_match_the_spec() {
    let pool = pool();
    let declared: Vec<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
    let listed: Vec<String> = SERVICES
        .iter()
        .map(|(s, _)| format!("{PACKAGE}.{s}"))
        .collect();
    assert_eq!(declared, listed, "the gRPC paths /csi.v1.<Service>/<Rpc>");

    for (service, rpcs) in SERVICES {
        let service = pool
            .get_service_by_name(&format!("{PACKAGE}.{service}"))
            .expect("service listed above");
        let actual: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
        assert_eq!(actual, *rpcs, "rpcs of {}", service.name());
        for method in service.methods() {
            let rpc = method.name();
            assert_eq!(method.input().name(), format!("{rpc}Request"));
            assert_eq!(method.output().name(), format!("{rpc}Response"));
            assert!(
                !method.is_client_streaming(),
                "{rpc} takes a single request"
            );
            assert_eq!(
                method.is_server_streaming(),
                service.name() == "SnapshotMetadata",
                "only the SnapshotMetadata rpcs stream their responses ({rpc})"
            );
        }
    }
}

#[test]
fn option_extensions_match_the_spec() {
    let pool = pool();
    let declared: BTreeSet<(String, String, u32)> = pool
        .all_extensions()
        .filter(|e| e.package_name() == PACKAGE)
        .map(|e| {
            (
                e.name().to_owned(),
                e.containing_message().full_name().to_owned(),
                e.number(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, u32)> = [
        ("alpha_enum", "google.protobuf.EnumOptions", 1060),
        ("alpha_enum_value", "google.protobuf.EnumValueOptions", 1060),
        ("csi_secret", "google.protobuf.FieldOptions", 1059),
        ("alpha_field", "google.protobuf.FieldOptions", 1060),
        ("alpha_message", "google.protobuf.MessageOptions", 1060),
        ("alpha_method", "google.protobuf.MethodOptions", 1060),
        ("alpha_service", "google.protobuf.ServiceOptions", 1060),
    ]
    .into_iter()
    .map(|(name, extendee, number)| (name.to_owned(), extendee.to_owned(), number))
    .collect();
    assert_eq!(declared, expected);
}

fn is_set(options: &prost_reflect::DynamicMessage, flag: &ExtensionDescriptor) -> bool {
    options.has_extension(flag) && *options.get_extension(flag) == Value::Bool(true)
}

fn local_name(full: &str) -> String {
    full.trim_start_matches("csi.v1.").to_owned()
}

/// Every field the spec marks `(csi_secret) = true`; redaction relies on it.
const SECRET_FIELDS: &[&str] = &[
    "CreateVolumeRequest.secrets",
    "DeleteVolumeRequest.secrets",
    "ControllerPublishVolumeRequest.secrets",
    "ControllerUnpublishVolumeRequest.secrets",
    "ValidateVolumeCapabilitiesRequest.secrets",
    "ControllerModifyVolumeRequest.secrets",
    "CreateSnapshotRequest.secrets",
    "DeleteSnapshotRequest.secrets",
    "ListSnapshotsRequest.secrets",
    "GetSnapshotRequest.secrets",
    "ControllerExpandVolumeRequest.secrets",
    "NodeStageVolumeRequest.secrets",
    "NodePublishVolumeRequest.secrets",
    "NodeExpandVolumeRequest.secrets",
    "CreateVolumeGroupSnapshotRequest.secrets",
    "DeleteVolumeGroupSnapshotRequest.secrets",
    "GetVolumeGroupSnapshotRequest.secrets",
    "GetMetadataAllocatedRequest.secrets",
    "GetMetadataDeltaRequest.secrets",
];

const ALPHA_FIELDS: &[&str] = &[
    "CreateVolumeRequest.mutable_parameters",
    "ValidateVolumeCapabilitiesRequest.mutable_parameters",
    "ValidateVolumeCapabilitiesResponse.Confirmed.mutable_parameters",
    "ListVolumesResponse.VolumeStatus.volume_condition",
    "GetCapacityResponse.minimum_volume_size",
    "NodeGetVolumeStatsResponse.volume_condition",
    "NodeExpandVolumeRequest.secrets",
];

fn marked_fields(pool: &DescriptorPool, flag: &str) -> BTreeSet<String> {
    let flag = extension(pool, flag);
    pool.all_messages()
        .filter(|m| m.package_name() == PACKAGE)
        .flat_map(|m| m.fields().collect::<Vec<_>>())
        .filter(|f| is_set(&f.options(), &flag))
        .map(|f| local_name(f.full_name()))
        .collect()
}

fn listed(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn field_options_match_the_spec() {
    let pool = pool();
    assert_eq!(marked_fields(&pool, "csi_secret"), listed(SECRET_FIELDS));
    assert_eq!(marked_fields(&pool, "alpha_field"), listed(ALPHA_FIELDS));
}

#[test]
fn alpha_markers_match_the_spec() {
    let pool = pool();

    let alpha_message = extension(&pool, "alpha_message");
    let messages: BTreeSet<String> = pool
        .all_messages()
        .filter(|m| m.package_name() == PACKAGE && is_set(&m.options(), &alpha_message))
        .map(|m| local_name(m.full_name()))
        .collect();
    assert_eq!(
        messages,
        listed(&[
            "ControllerGetVolumeRequest",
            "ControllerGetVolumeResponse",
            "ControllerModifyVolumeRequest",
            "ControllerModifyVolumeResponse",
            "GetSnapshotRequest",
            "GetSnapshotResponse",
            "VolumeCondition",
        ])
    );

    let alpha_method = extension(&pool, "alpha_method");
    let alpha_service = extension(&pool, "alpha_service");
    let mut methods = BTreeSet::new();
    let mut services = BTreeSet::new();
    for service in pool.services() {
        if is_set(&service.options(), &alpha_service) {
            services.insert(service.name().to_owned());
        }
        for method in service.methods() {
            if is_set(&method.options(), &alpha_method) {
                methods.insert(format!("{}.{}", service.name(), method.name()));
            }
        }
    }
    assert_eq!(
        methods,
        listed(&[
            "Controller.ControllerGetVolume",
            "Controller.ControllerModifyVolume",
            "Controller.GetSnapshot",
        ])
    );
    assert_eq!(services, listed(&["SnapshotMetadata"]));

    let alpha_value = extension(&pool, "alpha_enum_value");
    let values: BTreeSet<String> = pool
        .all_enums()
        .filter(|e| e.package_name() == PACKAGE)
        .flat_map(|e| e.values().collect::<Vec<_>>())
        .filter(|v| is_set(&v.options(), &alpha_value))
        .map(|v| format!("{}.{}", local_name(v.parent_enum().full_name()), v.name()))
        .collect();
    assert_eq!(
        values,
        listed(&[
            "PluginCapability.Service.Type.SNAPSHOT_METADATA_SERVICE",
            "VolumeCapability.AccessMode.Mode.SINGLE_NODE_SINGLE_WRITER",
            "VolumeCapability.AccessMode.Mode.SINGLE_NODE_MULTI_WRITER",
            "ControllerServiceCapability.RPC.Type.VOLUME_CONDITION",
            "ControllerServiceCapability.RPC.Type.GET_VOLUME",
            "ControllerServiceCapability.RPC.Type.SINGLE_NODE_MULTI_WRITER",
            "ControllerServiceCapability.RPC.Type.MODIFY_VOLUME",
            "ControllerServiceCapability.RPC.Type.GET_SNAPSHOT",
            "NodeServiceCapability.RPC.Type.VOLUME_CONDITION",
            "NodeServiceCapability.RPC.Type.SINGLE_NODE_MULTI_WRITER",
        ])
    );

    let alpha_enum = extension(&pool, "alpha_enum");
    assert!(
        pool.all_enums()
            .filter(|e| e.package_name() == PACKAGE)
            .all(|e| !is_set(&e.options(), &alpha_enum)),
        "the spec marks no whole enum alpha"
    );
}
