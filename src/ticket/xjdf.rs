//! XJDF 2.1 tickets: one product with the amount and the intents the job side gave
//! (media, layout, colour), and resource sets for the files, the customer and the
//! due date.

use super::jdf::process_color_model;
use super::xml::Element;
use super::{instructions, number, points, relative_url, TicketFile};
use crate::protocol::{Delivery, Sides};

const NAMESPACE: &str = "http://www.CIP4.org/JDFSchema_2_0";

pub(super) fn render(delivery: &Delivery, files: &[TicketFile<'_>]) -> Vec<u8> {
    let job = &delivery.job;
    let mut sets = Vec::new();
    let info = Element::new("CustomerInfo")
        .attr_some("CustomerOrderID", job.order_number.as_deref())
        .attr("CustomerJobName", &job.name);
    sets.push(resource_set("CustomerInfo", "r_customer", info));
    if let Some(customer) = &job.customer {
        let company = Element::new("Company").attr("OrganizationName", customer);
        sets.push(
            Element::new("ResourceSet")
                .attr("Name", "Contact")
                .attr("Usage", "Input")
                .child(
                    Element::new("Resource")
                        .attr("ID", "r_contact")
                        .child(Element::new("Part").attr("ContactType", "Customer"))
                        .child(Element::new("Contact").child(company)),
                ),
        );
    }
    if let Some(due) = job.ticket.as_ref().and_then(|ticket| ticket.due) {
        let due = due
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        sets.push(resource_set(
            "NodeInfo",
            "r_node",
            Element::new("NodeInfo").attr("End", due),
        ));
    }
    let run_lists = files.iter().enumerate().map(|(index, file)| {
        Element::new("Resource")
            .attr("ID", format!("r_run_{}", index + 1))
            .child(
                Element::new("RunList")
                    .child(Element::new("FileSpec").attr("URL", relative_url(file.path))),
            )
    });
    sets.push(
        Element::new("ResourceSet")
            .attr("Name", "RunList")
            .attr("Usage", "Input")
            .children(run_lists),
    );
    Element::new("XJDF")
        .attr("xmlns", NAMESPACE)
        .attr("JobID", nmtoken(&job.id))
        .attr("Types", "DigitalPrinting")
        .attr("Version", "2.1")
        .attr("DescriptiveName", &job.name)
        .children(instructions(delivery).map(|text| Element::new("Comment").text(&text)))
        .children(product(delivery))
        .children(sets)
        .into_document()
}

/// The product the job side described, when it described one (a version-1 job side
/// does not).
fn product(delivery: &Delivery) -> Option<Element> {
    let ticket = delivery.job.ticket.as_ref()?;
    let mut intents = Vec::new();
    if let Some(media) = &ticket.media {
        intents.push(intent(
            "MediaIntent",
            Element::new("MediaIntent")
                .attr("MediaType", "Paper")
                .attr_some("MediaQuality", media.name.as_deref())
                .attr_some("Weight", media.weight_gsm.map(number)),
        ));
    }
    let finished = ticket.media.as_ref().and_then(|media| {
        Some(format!(
            "{} {} 0",
            points(media.width_mm?),
            points(media.height_mm?)
        ))
    });
    if ticket.sides.is_some() || finished.is_some() {
        let sides = ticket.sides.map(|sides| match sides {
            Sides::OneSided => "OneSided",
            Sides::TwoSided => "TwoSidedHeadToHead",
        });
        intents.push(intent(
            "LayoutIntent",
            Element::new("LayoutIntent")
                .attr_some("FinishedDimensions", finished)
                .attr_some("Sides", sides),
        ));
    }
    if let Some(colors) = ticket.color.as_deref().and_then(colors_used) {
        let surfaces = match ticket.sides {
            Some(Sides::TwoSided) => &["Front", "Back"][..],
            _ => &["Front"][..],
        };
        intents.push(intent(
            "ColorIntent",
            Element::new("ColorIntent").children(surfaces.iter().map(|surface| {
                Element::new("SurfaceColor")
                    .attr("ColorsUsed", colors)
                    .attr("Surface", *surface)
            })),
        ));
    }
    // XJDF counts in a 32-bit integer; a larger amount is left for the operator.
    let amount = ticket.quantity.filter(|&n| i32::try_from(n).is_ok());
    Some(
        Element::new("ProductList").child(
            Element::new("Product")
                .attr("ID", "p_1")
                .attr("IsRoot", "true")
                .attr_some("Amount", amount.map(|n| n.to_string()))
                .attr("DescriptiveName", &delivery.job.name)
                .children(intents),
        ),
    )
}

fn intent(name: &'static str, body: Element) -> Element {
    Element::new("Intent").attr("Name", name).child(body)
}

fn resource_set(name: &str, id: &str, body: Element) -> Element {
    Element::new("ResourceSet")
        .attr("Name", name)
        .attr("Usage", "Input")
        .child(Element::new("Resource").attr("ID", id).child(body))
}

/// The colorants a colour word means, as XJDF names them.
fn colors_used(color: &str) -> Option<&'static str> {
    match process_color_model(color)? {
        "DeviceCMYK" => Some("Cyan Magenta Yellow Black"),
        "DeviceGray" => Some("Black"),
        _ => None,
    }
}

/// `value` as an XML name token (XJDF's `JobID`): what cannot stand in one becomes `_`.
/// Only ASCII is kept: some Unicode letters and digits (º, ², ①) are no name characters.
fn nmtoken(value: &str) -> String {
    let token: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "_".into()
    } else {
        token
    }
}
