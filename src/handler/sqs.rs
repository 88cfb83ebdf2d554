//! An SQS batch: each record a request, FIFO order per message group, and the partial batch
//! answer (`batchItemFailures`) naming only the records a retry can help.

use super::*;

/// A processed record: its place in the batch, its report, and its ID when a retry can help.
pub(super) struct Processed {
    index: usize,
    report: Report,
    retry_id: Option<String>,
}

impl Handler {
    /// An SQS batch: each record's body is a request. A record that failed in a way a retry can
    /// fix goes into `batchItemFailures`; one that can never succeed is reported, not retried.
    /// Records of one FIFO message group run in order, and after a retryable failure the rest
    /// of that group is returned unprocessed, so the queue keeps their order.
    pub(super) async fn sqs(&self, event: &Value, deadline: Option<Instant>) -> Reply {
        // Boxed before the stream: a closure over the groups' borrowed records inside the
        // stream would make this future's `Send` depend on a lifetime rustc cannot prove
        // general (and axum, for the Function Compute front door, needs it `Send`).
        type GroupRun<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Processed>> + Send + 'a>>;
        let runs: Vec<GroupRun<'_>> = aws::sqs_groups(event)
            .into_iter()
            .map(|group| Box::pin(self.sqs_group(group, deadline)) as GroupRun<'_>)
            .collect();
        let done: Vec<Vec<Processed>> = stream::iter(runs)
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut flat: Vec<Processed> = done.into_iter().flatten().collect();
        flat.sort_by_key(|p| p.index);
        let failures = flat.iter().filter_map(|p| p.retry_id.clone()).collect();
        let reports = flat.into_iter().map(|p| p.report).collect();
        Reply {
            shape: Shape::Sqs { failures },
            reports,
            summaries: vec![],
        }
    }

    /// One SQS message group, in order (a standard queue's record is a group of one).
    pub(super) async fn sqs_group(
        &self,
        group: aws::SqsGroup<'_>,
        deadline: Option<Instant>,
    ) -> Vec<Processed> {
        let mut out = Vec::with_capacity(group.records.len());
        let mut blocked = false;
        for (index, record) in group.records {
            let job = aws::sqs_record(record);
            let id = Some(job.trigger.id.clone()).filter(|id| !id.is_empty());
            let report = if blocked {
                bare(
                    Outcome::Rejected,
                    &job.trigger,
                    Some(ErrorInfo::new(
                        "NotProcessed",
                        "an earlier message of the same FIFO group failed; this one is returned to keep the order",
                        true,
                    )),
                )
            } else {
                self.run_job(job, deadline).await
            };
            let retry = retryable_failure(&report);
            blocked |= retry && group.id.is_some();
            out.push(Processed {
                index,
                report,
                retry_id: if retry { id } else { None },
            });
        }
        out
    }
}
