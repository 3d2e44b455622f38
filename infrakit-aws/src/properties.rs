//! The properties of an EC2 group's instance section, validated.

use infrakit_core::{InstanceError, SpecError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What an EC2 instance is launched with: the `Properties` of a group's `Instance` section
/// (`"Instance": {"Plugin": "ec2", "Properties": {..}}`).
///
/// ```json
/// {"ImageId": "ami-0abcdef1234567890", "InstanceType": "t3.small",
///  "SubnetId": "subnet-0123", "SecurityGroupIds": ["sg-0123"], "KeyName": "ops",
///  "IamInstanceProfile": "swarm-manager", "AvailabilityZone": "eu-west-1a",
///  "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "VolumeSize": 20, "VolumeType": "gp3"}],
///  "Tags": {"team": "infra"}, "AttachDevice": "/dev/xvdf"}
/// ```
///
/// - `ImageId` (required, `ami-…`) and `InstanceType` (required).
/// - `SubnetId`, or `SubnetIds` to spread a group: an instance with a logical ID (a fixed
///   private IP) goes to the subnet whose CIDR holds the IP; others go round-robin. Without a
///   subnet, EC2 picks one of the default VPC (fixed IPs then need a subnet).
/// - `SecurityGroupIds`, `KeyName`, `IamInstanceProfile` (a name or an ARN),
///   `AvailabilityZone`, `AssociatePublicIpAddress`, `BlockDeviceMappings`: as in
///   `RunInstances`.
/// - `Tags`: extra tags set at launch. They are not part of the instance's identity: describe
///   never matches on them.
/// - `AttachDevice`: where the first `ebs` attachment is attached (default `/dev/xvdf`); the
///   next ones get the following letters (`/dev/xvdg`, …).
///
/// Unknown fields are errors (a misspelt `ImageID` is caught, not ignored).
///
/// ```
/// use infrakit_aws::Ec2Properties;
/// use serde_json::json;
/// let err = Ec2Properties::parse(&json!({"ImageId": "ami-1", "InstanceType": "t3.micro",
///     "SecurityGroupIds": ["default"]})).unwrap_err();
/// assert!(err.to_string().contains("SecurityGroupIds[0]"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Properties {
    /// The AMI.
    #[serde(rename = "ImageId")]
    pub image_id: String,
    /// The instance type, e.g. `t3.micro`.
    #[serde(rename = "InstanceType")]
    pub instance_type: String,
    /// One subnet.
    #[serde(rename = "SubnetId", default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Several subnets (exclusive with `SubnetId`).
    #[serde(rename = "SubnetIds", default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_ids: Vec<String>,
    /// Security groups (IDs, `sg-…`).
    #[serde(
        rename = "SecurityGroupIds",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub security_group_ids: Vec<String>,
    /// An SSH key pair's name.
    #[serde(rename = "KeyName", default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// An instance profile: a name, or an ARN (`arn:aws:iam::…`).
    #[serde(
        rename = "IamInstanceProfile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub iam_instance_profile: Option<String>,
    /// The availability zone (placement).
    #[serde(
        rename = "AvailabilityZone",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub availability_zone: Option<String>,
    /// Whether the primary interface gets a public IP.
    #[serde(
        rename = "AssociatePublicIpAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub associate_public_ip_address: Option<bool>,
    /// Volumes created with the instance (its root disk, scratch disks).
    #[serde(
        rename = "BlockDeviceMappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub block_device_mappings: Vec<BlockDevice>,
    /// Extra tags, set at launch.
    #[serde(rename = "Tags", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The device of the first `ebs` attachment.
    #[serde(
        rename = "AttachDevice",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub attach_device: Option<String>,
}

/// A volume created at launch (`BlockDeviceMappings[]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDevice {
    /// The device, e.g. `/dev/xvda`.
    #[serde(rename = "DeviceName")]
    pub device_name: String,
    /// Size in GiB.
    #[serde(
        rename = "VolumeSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub volume_size: Option<i32>,
    /// `gp3`, `gp2`, `io1`, ...
    #[serde(
        rename = "VolumeType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub volume_type: Option<String>,
    /// Delete with the instance (EC2's default: yes).
    #[serde(
        rename = "DeleteOnTermination",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_on_termination: Option<bool>,
    /// Encrypted at rest.
    #[serde(rename = "Encrypted", default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

/// The default device of the first `ebs` attachment.
pub const DEFAULT_ATTACH_DEVICE: &str = "/dev/xvdf";

fn require_prefix(field: String, value: &str, prefix: &str) -> Result<(), SpecError> {
    if value.starts_with(prefix) && value.len() > prefix.len() {
        Ok(())
    } else {
        Err(SpecError::new(
            field,
            format!("{value:?} is not an ID of the form {prefix}…"),
        ))
    }
}

impl Ec2Properties {
    /// Parses and validates; the error names the field.
    pub fn parse(properties: &Value) -> Result<Self, InstanceError> {
        let p: Ec2Properties = SpecError::from_value(properties.clone())?;
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), SpecError> {
        require_prefix("ImageId".into(), &self.image_id, "ami-")?;
        if self.instance_type.trim().is_empty() || self.instance_type.contains(char::is_whitespace)
        {
            return Err(SpecError::new(
                "InstanceType",
                "an instance type such as t3.micro is required",
            ));
        }
        if self.subnet_id.is_some() && !self.subnet_ids.is_empty() {
            return Err(SpecError::new(
                "SubnetIds",
                "give either SubnetId or SubnetIds, not both",
            ));
        }
        if let Some(s) = &self.subnet_id {
            require_prefix("SubnetId".into(), s, "subnet-")?;
        }
        for (i, s) in self.subnet_ids.iter().enumerate() {
            require_prefix(format!("SubnetIds[{i}]"), s, "subnet-")?;
        }
        for (i, s) in self.security_group_ids.iter().enumerate() {
            require_prefix(format!("SecurityGroupIds[{i}]"), s, "sg-")?;
        }
        if let Some(k) = &self.key_name
            && k.trim().is_empty()
        {
            return Err(SpecError::new("KeyName", "must not be empty"));
        }
        if let Some(p) = &self.iam_instance_profile
            && p.trim().is_empty()
        {
            return Err(SpecError::new("IamInstanceProfile", "must not be empty"));
        }
        for (i, b) in self.block_device_mappings.iter().enumerate() {
            if !b.device_name.starts_with("/dev/") {
                return Err(SpecError::new(
                    format!("BlockDeviceMappings[{i}].DeviceName"),
                    "must be a device path such as /dev/xvda",
                ));
            }
            if let Some(size) = b.volume_size
                && !(1..=65536).contains(&size)
            {
                return Err(SpecError::new(
                    format!("BlockDeviceMappings[{i}].VolumeSize"),
                    "must be between 1 and 65536 GiB",
                ));
            }
        }
        for k in self.tags.keys() {
            if k.is_empty() || k.len() > 128 || k.to_ascii_lowercase().starts_with("aws:") {
                return Err(SpecError::new(
                    format!("Tags.{k}"),
                    "tag keys are 1-128 characters and may not start with aws:",
                ));
            }
        }
        if let Some(d) = &self.attach_device {
            attachment_devices(d, 1).map_err(|reason| SpecError::new("AttachDevice", reason))?;
        }
        Ok(())
    }

    /// The subnet for an instance: the one holding `ip` when there is one (`cidrs` maps each
    /// subnet of `SubnetIds` to its CIDR), else round-robin by `turn`.
    pub(crate) fn subnet_for(
        &self,
        ip: Option<Ipv4Addr>,
        cidrs: &BTreeMap<String, (Ipv4Addr, u8)>,
        turn: usize,
    ) -> Result<Option<String>, SpecError> {
        if let Some(s) = &self.subnet_id {
            return Ok(Some(s.clone()));
        }
        if self.subnet_ids.is_empty() {
            return match ip {
                Some(ip) => Err(SpecError::new(
                    "SubnetId",
                    format!("a subnet is required to launch with the fixed private IP {ip}"),
                )),
                None => Ok(None),
            };
        }
        match ip {
            None => Ok(Some(self.subnet_ids[turn % self.subnet_ids.len()].clone())),
            Some(ip) => self
                .subnet_ids
                .iter()
                .find(|s| {
                    cidrs
                        .get(*s)
                        .is_some_and(|(net, len)| cidr_contains(*net, *len, ip))
                })
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    SpecError::new(
                        "SubnetIds",
                        format!("no subnet of {:?} holds the IP {ip}", self.subnet_ids),
                    )
                }),
        }
    }
}

/// Whether `ip` is inside `net/len`.
pub(crate) fn cidr_contains(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(len.min(32)));
    (u32::from(net) & mask) == (u32::from(ip) & mask)
}

/// Parses `a.b.c.d/len`.
pub(crate) fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (net, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some(())?;
    Some((net.parse().ok()?, len))
}

/// `n` devices starting at `first` (`/dev/xvdf` → `/dev/xvdf`, `/dev/xvdg`, …).
pub(crate) fn attachment_devices(first: &str, n: usize) -> Result<Vec<String>, String> {
    let Some(last) = first.chars().last().filter(char::is_ascii_lowercase) else {
        return Err(format!(
            "{first:?} must be a device path ending in a letter, such as /dev/xvdf"
        ));
    };
    if !first.starts_with("/dev/") {
        return Err(format!("{first:?} must be a device path such as /dev/xvdf"));
    }
    let stem = &first[..first.len() - 1];
    (0..n)
        .map(|i| {
            let c = (last as u8)
                .checked_add(u8::try_from(i).map_err(|_| "too many attachments".to_string())?)
                .filter(|c| *c <= b'z')
                .ok_or_else(|| format!("too many attachments after {first}"))?;
            Ok(format!("{stem}{}", c as char))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"ImageId": "ami-1", "InstanceType": "t3.micro"})
    }

    fn err(mut patch: Value) -> String {
        let mut v = ok();
        if let (Some(o), Some(p)) = (v.as_object_mut(), patch.as_object_mut()) {
            for (k, val) in std::mem::take(p) {
                o.insert(k, val);
            }
        }
        Ec2Properties::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn minimal_properties_parse() {
        let p = Ec2Properties::parse(&ok()).unwrap();
        assert_eq!(p.image_id, "ami-1");
        assert_eq!(p.instance_type, "t3.micro");
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(json!({"ImageId": "ubuntu"})).contains("ImageId"));
        assert!(err(json!({"InstanceType": ""})).contains("InstanceType"));
        assert!(err(json!({"SubnetId": "s-1"})).contains("SubnetId"));
        assert!(
            err(json!({"SubnetId": "subnet-1", "SubnetIds": ["subnet-2"]})).contains("SubnetIds")
        );
        assert!(err(json!({"SubnetIds": ["subnet-1", "x"]})).contains("SubnetIds[1]"));
        assert!(
            err(json!({"BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "VolumeSize": 0}]}))
                .contains("BlockDeviceMappings[0].VolumeSize")
        );
        assert!(err(json!({"Tags": {"aws:x": "1"}})).contains("Tags.aws:x"));
        assert!(err(json!({"AttachDevice": "/dev/xvd1"})).contains("AttachDevice"));
        let unknown = err(json!({"ImageID": "ami-2"}));
        assert!(unknown.contains("ImageID"), "{unknown}");
        let missing = Ec2Properties::parse(&json!({"InstanceType": "t3.micro"}))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("ImageId"), "{missing}");
    }

    #[test]
    fn devices_follow_the_first() {
        assert_eq!(
            attachment_devices("/dev/xvdf", 3).unwrap(),
            ["/dev/xvdf", "/dev/xvdg", "/dev/xvdh"]
        );
        assert!(attachment_devices("/dev/xvdz", 2).is_err());
    }

    #[test]
    fn subnets_are_chosen_by_ip_or_in_turn() {
        let p = Ec2Properties {
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            ..Ec2Properties::parse(&ok()).unwrap()
        };
        let cidrs = BTreeMap::from([
            ("subnet-a".to_string(), parse_cidr("10.0.1.0/24").unwrap()),
            ("subnet-b".to_string(), parse_cidr("10.0.2.0/24").unwrap()),
        ]);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            p.subnet_for(ip("10.0.2.7"), &cidrs, 0).unwrap().unwrap(),
            "subnet-b"
        );
        assert!(
            p.subnet_for(ip("10.0.3.7"), &cidrs, 0)
                .unwrap_err()
                .to_string()
                .contains("10.0.3.7")
        );
        assert_eq!(p.subnet_for(None, &cidrs, 3).unwrap().unwrap(), "subnet-b");
        let none = Ec2Properties::parse(&ok()).unwrap();
        assert!(none.subnet_for(ip("10.0.0.1"), &cidrs, 0).is_err());
        assert_eq!(none.subnet_for(None, &cidrs, 0).unwrap(), None);
    }
}
