//! Kafka error codes. Rust errors and group errors are mapped to them here, at the edge.

use kafka_protocol::ResponseError as E;
use sluice_log::{BatchError, Error as LogError};

use crate::group::GroupError;

/// No error.
pub const NONE: i16 = 0;

/// The Kafka code for a group coordinator error.
pub fn group(e: GroupError) -> i16 {
    match e {
        GroupError::None => NONE,
        GroupError::UnknownMemberId => E::UnknownMemberId.code(),
        GroupError::IllegalGeneration => E::IllegalGeneration.code(),
        GroupError::RebalanceInProgress => E::RebalanceInProgress.code(),
        GroupError::MemberIdRequired => E::MemberIdRequired.code(),
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol.code(),
        GroupError::FencedInstanceId => E::FencedInstanceId.code(),
        GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout.code(),
        GroupError::GroupIdNotFound => E::GroupIdNotFound.code(),
        GroupError::NonEmptyGroup => E::NonEmptyGroup.code(),
        GroupError::InvalidGroupId => E::InvalidGroupId.code(),
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic.code(),
    }
}

/// The Kafka code for a storage error.
pub fn log(e: &LogError) -> i16 {
    match e {
        LogError::InvalidBatch { reason, .. } => match reason {
            BatchError::Crc { .. } | BatchError::Truncated { .. } | BatchError::BadLength(_) => {
                E::CorruptMessage.code()
            }
            BatchError::BadMagic(_) => E::UnsupportedForMessageFormat.code(),
            BatchError::Compression(_) => E::CorruptMessage.code(),
            BatchError::Inconsistent(_) | BatchError::BadRecord(_) => E::InvalidRecord.code(),
        },
        LogError::MessageTooLarge { .. } => E::MessageTooLarge.code(),
        LogError::MissingKeyForCompactedTopic { .. } => E::InvalidRecord.code(),
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            E::UnknownTopicOrPartition.code()
        }
        LogError::TopicExists(_) => E::TopicAlreadyExists.code(),
        LogError::InvalidTopicName { .. } => E::InvalidTopicException.code(),
        LogError::InvalidConfig { .. } => E::InvalidConfig.code(),
        LogError::InvalidPartitions { .. } => E::InvalidPartitions.code(),
        LogError::OffsetOutOfRange { .. } => E::OffsetOutOfRange.code(),
        LogError::Io { .. }
        | LogError::Corrupt { .. }
        | LogError::PartitionFailed { .. }
        | LogError::BadMetadata { .. } => E::KafkaStorageError.code(),
        LogError::Locked { .. } | LogError::ReadOnly => E::UnknownServerError.code(),
    }
}
