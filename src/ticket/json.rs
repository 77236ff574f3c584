//! Plain JSON tickets, for a script watching the hotfolder: the job as the job side
//! described it and the files as they were dropped.

use serde_json::json;

use super::TicketFile;
use crate::protocol::Delivery;

pub(super) fn render(delivery: &Delivery, files: &[TicketFile<'_>]) -> Vec<u8> {
    let job = &delivery.job;
    let files: Vec<_> = files
        .iter()
        .map(|file| {
            json!({"path": file.path, "role": file.role, "size": file.size, "sha256": file.sha256})
        })
        .collect();
    let document = json!({
        "tbot_ticket": 1,
        "delivery": delivery.id,
        "queue": delivery.queue,
        "job": {
            "id": job.id,
            "name": job.name,
            "order_number": job.order_number,
            "customer": job.customer,
            "send_count": job.send_count,
        },
        "ticket": job.ticket,
        "files": files,
    });
    let mut bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
